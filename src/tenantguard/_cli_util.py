"""Shared bits of the command line: consoles and error handling (exit code 2)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import psycopg
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tenantguard.errors import TenantGuardError, first_line

if TYPE_CHECKING:
    from tenantguard.tooling.findings import Report

__all__ = [
    "announce_inferred",
    "err",
    "finish",
    "folded",
    "handled",
    "live_target_options",
    "one_runtime_role",
    "out",
    "report_options",
]

F = TypeVar("F", bound=Callable[..., Any])

err = Console(stderr=True)
out = Console()


def folded(table: Table) -> Table:
    """*table* with cells that wrap at spaces and fold a word too long for its column onto
    the next line: never cut with an ellipsis (rich's default), nothing lost."""
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = False
    return table


def _fail(exc: TenantGuardError) -> None:
    err.print(f"[bold red]error[/] [dim]{exc.code}[/] {escape(exc.message)}", highlight=False)
    if exc.hint:
        err.print(f"[yellow]hint:[/] {escape(exc.hint)}", highlight=False)
    sys.exit(2)


def handled(fn: F) -> F:
    """Turn tenantguard errors into a clear message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TenantGuardError as exc:
            _fail(exc)
        except psycopg.Error as exc:
            first = first_line(exc)
            err.print(f"[bold red]database error[/] {escape(first)}", highlight=False)
            err.print(
                "[yellow]hint:[/] nothing was committed; check the DSN's role has the "
                "privileges this command needs (an administrator for install/protect)"
            )
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Apply click option decorators so that they show in --help in the order given."""

    def apply(fn: F) -> F:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


def live_target_options(*, dsn_help: str, app_dsn_help: str) -> Callable[[F], F]:
    """The options of the tools that look at a live database (audit, probe)."""
    return _stack(
        click.option("--dsn", envvar="TENANTGUARD_DSN", required=True, help=dsn_help),
        click.option(
            "--app-role", default=None, help="The runtime role the application logs in as."
        ),
        click.option("--app-dsn", default=None, help=app_dsn_help),
        click.option(
            "--tenant-column",
            "tenant_column",
            multiple=True,
            metavar="COLUMN | SCHEMA.TABLE=COLUMN",
            help="The tenant column (default tenant_id), and SCHEMA.TABLE=COLUMN for tables "
            "whose key differs (public.companies=id); repeatable, or tenant-columns in "
            "tenantguard.toml. Tables that reference a tenant table's key by one unambiguous "
            "column get it inferred (printed).",
        ),
        click.option(
            "--setting", default=None, help="Tenant setting (default: inferred from the policies)."
        ),
        click.option("--schema", "schemas", multiple=True, help="Only these schemas (repeatable)."),
        click.option(
            "--table", "tables", multiple=True, help="Only these SCHEMA.TABLEs (repeatable)."
        ),
    )


def report_options(noun: str = "findings") -> Callable[[F], F]:
    """--format, --output and --fail-on, as every reporting tool takes them."""
    return _stack(
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["human", "json", "sarif", "html"]),
            default="human",
            show_default=True,
        ),
        click.option(
            "--output",
            default=None,
            type=click.Path(dir_okay=False),
            help="Write the report here instead of stdout.",
        ),
        click.option(
            "--fail-on",
            type=click.Choice(["low", "medium", "high", "critical"]),
            default="low",
            show_default=True,
            help=f"Exit 1 on {noun} at or above this severity.",
        ),
    )


def one_runtime_role(app_role: str | None, app_dsn: str | None) -> None:
    if (app_role is None) == (app_dsn is None):
        raise click.UsageError("pass exactly one of --app-role or --app-dsn")


def finish(report: Report, fmt: str, output: str | None, fail_on: str) -> NoReturn:
    """Write *report* as asked and exit 0 (clean) or 1 (findings at or above *fail_on*)."""
    from tenantguard.tooling.findings import Severity, exit_code
    from tenantguard.tooling.report import write

    write(report, fmt, output, out)  # type: ignore[arg-type]
    if output:
        err.print(f"wrote the {fmt} report to {escape(output)}", highlight=False)
    sys.exit(exit_code(report, Severity.parse(fail_on)))


def announce_inferred(report: Report) -> None:
    """Say which tenant columns were inferred, on stderr (the report is on stdout)."""
    for table, how in (report.meta.get("inferred_tenant_columns") or {}).items():
        err.print(f"[dim]inferred tenant column:[/] {escape(table)}.{escape(how)}", highlight=False)
