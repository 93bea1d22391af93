"""The ``tenantguard probe`` command."""

from __future__ import annotations

import click

from tenantguard._cli_util import (
    announce_inferred,
    err,
    finish,
    handled,
    live_target_options,
    one_runtime_role,
    report_options,
)
from tenantguard.tooling.config import load_config, parse_tenant_columns

__all__ = ["probe_command"]


@click.command("probe")
@live_target_options(
    dsn_help="Administrator DSN: a superuser (or BYPASSRLS member of the runtime role).",
    app_dsn_help="Or: the application's DSN (its login role is probed, and a fresh login "
    "with no tenant bound is tried too).",
)
@click.option(
    "--statement-timeout",
    default=10_000,
    show_default=True,
    type=click.IntRange(100, 600_000),
    help="Per-attack statement_timeout in milliseconds.",
)
@click.option(
    "--call-volatile-functions",
    is_flag=True,
    help="Also call VOLATILE SECURITY DEFINER functions (inside the rolled-back transaction; "
    "what they do outside the database is not undone).",
)
@report_options("leaks")
@handled
def probe_command(
    dsn: str,
    app_role: str | None,
    app_dsn: str | None,
    tenant_column: tuple[str, ...],
    setting: str | None,
    schemas: tuple[str, ...],
    tables: tuple[str, ...],
    statement_timeout: int,
    call_volatile_functions: bool,
    fmt: str,
    output: str | None,
    fail_on: str,
) -> None:
    """Attack a live database as tenant A against tenant B; exit 0 no leak, 1 leaks, 2 error.

    For every tenant table the runtime role can touch: read, insert with B's id, update
    into and out of B (with and without WHERE), delete, foreign-key references to B's
    rows, unique-key oracles, partitions, views and SECURITY DEFINER functions, cached
    plans reused across tenants, and no / empty / hostile tenant ids. Everything runs in
    transactions that roll back; each leak comes with the SQL that proved it.

    \b
    Example:
      tenantguard probe --dsn postgresql://postgres@127.0.0.1/app --app-role app_user \\
          --format sarif --output probe.sarif
    """
    from rich.markup import escape
    from rich.progress import Progress

    from tenantguard.admin.connect import admin_connect
    from tenantguard.tooling.probe import probe_database

    one_runtime_role(app_role, app_dsn)
    cfg = load_config()  # tenantguard.toml / [tool.tenantguard]: the command line wins
    default, given = parse_tenant_columns(tenant_column)
    mapping = {**cfg.tenant_columns, **given}
    default_column = default or cfg.tenant_column or "tenant_id"
    setting = setting or cfg.setting
    with (
        admin_connect(dsn, autocommit=True) as conn,
        Progress(console=err, transient=True, disable=not err.is_terminal) as bar,
    ):
        task = bar.add_task("probing", total=None)
        report = probe_database(
            conn,
            app_role=app_role,
            app_dsn=app_dsn,
            tenant_column=default_column,
            tenant_columns=mapping,
            setting=setting,
            schemas=list(schemas) or None,
            tables=list(tables) or None,
            statement_timeout_ms=statement_timeout,
            call_volatile=call_volatile_functions,
            progress=lambda name: bar.update(
                task, description=f"probing {escape(name)}", advance=1
            ),
        )
    announce_inferred(report)
    finish(report, fmt, output, fail_on)
