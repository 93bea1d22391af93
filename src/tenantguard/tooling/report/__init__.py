"""Renderers for audit/probe/lint reports: human (rich), JSON, SARIF 2.1.0, HTML.

Checks produce :class:`~tenantguard.tooling.findings.Report` values; nothing here
inspects a database or a file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from rich.console import Console

from tenantguard.tooling.findings import Report
from tenantguard.tooling.report.html import to_html
from tenantguard.tooling.report.human import print_human
from tenantguard.tooling.report.json_report import to_json
from tenantguard.tooling.report.sarif import to_sarif

__all__ = ["Format", "print_human", "to_html", "to_json", "to_sarif", "write"]

Format = Literal["human", "json", "sarif", "html"]


def write(report: Report, fmt: Format, output: str | None, console: Console) -> None:
    """Human output goes to *console* (stderr by convention); the others to *output* or stdout."""
    if fmt == "human":
        print_human(report, console)
        if output is None:
            return
        text = to_json(report)
    else:
        text = {"json": to_json, "sarif": to_sarif, "html": to_html}[fmt](report)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
