"""Renderers for audit/probe/lint reports: human (rich), JSON, SARIF 2.1.0, HTML.

Checks produce :class:`~tenantguard.tooling.findings.Report` values; nothing here
inspects a database or a file.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Literal

from rich.console import Console

from tenantguard.tooling.findings import Report
from tenantguard.tooling.report.html import to_html
from tenantguard.tooling.report.human import print_human
from tenantguard.tooling.report.json_report import to_json
from tenantguard.tooling.report.sarif import to_sarif

__all__ = ["Format", "print_human", "to_html", "to_json", "to_sarif", "to_text", "write"]

Format = Literal["human", "json", "sarif", "html"]


def to_text(report: Report, width: int = 100) -> str:
    """The human report as plain text (no colour codes), for a file."""
    buffer = io.StringIO()
    print_human(report, Console(file=buffer, width=width, color_system=None, highlight=False))
    return buffer.getvalue()


def write(report: Report, fmt: Format, output: str | None, console: Console) -> None:
    """The report in *fmt*: to the file *output* when given (the format asked for, human
    included, as plain text), else to stdout (human: through *console*, the stdout one)."""
    if fmt == "human" and output is None:
        print_human(report, console)
        return
    if fmt == "human":
        text = to_text(report)
    else:
        text = {"json": to_json, "sarif": to_sarif, "html": to_html}[fmt](report)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
