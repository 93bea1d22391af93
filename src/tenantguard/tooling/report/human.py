"""Readable output through rich (to stdout, like every other format)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from tenantguard.tooling.findings import Report, Severity
from tenantguard.tooling.report.json_report import scope, summary

_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
}


def print_human(report: Report, console: Console) -> None:
    counts = summary(report)
    console.print(
        f"[bold]tenantguard {report.tool}[/] {escape(report.target)}: "
        + ", ".join(f"{counts[str(s)]} {s}" for s in sorted(Severity, reverse=True))
    )
    shown_fixes: dict[str, str] = {}  # fix SQL -> the object it was first printed for
    for f in sorted(report.findings, key=lambda f: (-f.level, f.rule.code, f.object)):
        style = _STYLE[f.level]
        where = f" {f.location.path}:{f.location.line}" if f.location else ""
        console.print(
            f"[{style}]{str(f.level).upper():8s}[/] [bold]{f.rule.code}[/] {f.rule.name}"
            f" [dim]{escape(f.object)}{escape(where)}[/]"
        )
        console.print(f"         {escape(f.message)}")
        if f.fix_sql and f.fix_sql in shown_fixes:
            console.print(f"         [green]fix:[/] as for {escape(shown_fixes[f.fix_sql])} above")
        elif f.fix_sql:
            shown_fixes[f.fix_sql] = f.object
            console.print(f"         [green]fix:[/] {_indent(escape(f.fix_sql))}")
        if f.evidence:
            console.print(f"         [dim]evidence: {_indent(escape(f.evidence))}[/]")
    if not report.findings:
        console.print(f"[green]no findings[/] in {escape(scope(report))}")
    else:
        console.print(f"[dim]scope: {escape(scope(report))}[/]")


def _indent(text: str) -> str:
    """Continuation lines of multi-line SQL line up under the first."""
    return text.replace("\n", "\n" + " " * 14)
