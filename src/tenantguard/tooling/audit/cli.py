"""The ``tenantguard audit`` command."""

from __future__ import annotations

import click

from tenantguard._cli_util import (
    announce_inferred,
    finish,
    handled,
    live_target_options,
    one_runtime_role,
    report_options,
)
from tenantguard.tooling.config import load_config, parse_tenant_columns

__all__ = ["audit_command"]


@click.command("audit")
@live_target_options(
    dsn_help="Administrator DSN (superuser or member of the runtime role).",
    app_dsn_help="Or: the application's DSN (its login role is audited; a fresh session "
    "shows server-level defaults).",
)
@click.option(
    "--pooler-dsn",
    default=None,
    help="PgBouncer in front of the database: its admin console is read (SHOW CONFIG, "
    "DATABASES, POOLS; dbname is set to pgbouncer; the user must be in admin_users or "
    "stats_users).",
)
@report_options()
@handled
def audit_command(
    dsn: str,
    app_role: str | None,
    app_dsn: str | None,
    tenant_column: tuple[str, ...],
    setting: str | None,
    schemas: tuple[str, ...],
    tables: tuple[str, ...],
    pooler_dsn: str | None,
    fmt: str,
    output: str | None,
    fail_on: str,
) -> None:
    """Audit a live database for tenant-isolation leaks; exit 0 clean, 1 findings, 2 error.

    Every finding has a rule code, a severity, the object, why it leaks and the SQL that
    fixes it. Works on databases tenantguard did not create.
    """
    from tenantguard.admin.connect import admin_connect
    from tenantguard.tooling.audit import audit_database

    one_runtime_role(app_role, app_dsn)
    cfg = load_config()  # tenantguard.toml / [tool.tenantguard]: the command line wins
    default, given = parse_tenant_columns(tenant_column)
    mapping = {**cfg.tenant_columns, **given}
    default_column = default or cfg.tenant_column or "tenant_id"
    setting = setting or cfg.setting
    with admin_connect(dsn, autocommit=True) as conn:
        report = audit_database(
            conn,
            app_role=app_role,
            app_dsn=app_dsn,
            tenant_column=default_column,
            tenant_columns=mapping,
            setting=setting,
            schemas=list(schemas) or None,
            tables=list(tables) or None,
            pooler_dsn=pooler_dsn,
        )
    announce_inferred(report)
    finish(report, fmt, output, fail_on)
