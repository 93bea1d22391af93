"""The ``tenantguard audit`` command."""

from __future__ import annotations

import click

from tenantguard._cli_util import handled

__all__ = ["audit_command"]

FORMATS = click.Choice(["human", "json", "sarif", "html"])
LEVELS = click.Choice(["low", "medium", "high", "critical"])


@click.command("audit")
@click.option(
    "--dsn",
    envvar="TENANTGUARD_DSN",
    required=True,
    help="Administrator DSN (superuser or member of the runtime role).",
)
@click.option("--app-role", default=None, help="The runtime role the application logs in as.")
@click.option(
    "--app-dsn",
    default=None,
    help="Or: the application's DSN (its login role is audited; a fresh session shows server-level defaults).",
)
@click.option(
    "--pooler-dsn",
    default=None,
    help="PgBouncer in front of the database: its admin console is read (SHOW CONFIG, "
    "DATABASES, POOLS; dbname is set to pgbouncer; the user must be in admin_users or "
    "stats_users).",
)
@click.option("--tenant-column", default="tenant_id", show_default=True)
@click.option(
    "--setting", default=None, help="Tenant setting (default: inferred from the policies)."
)
@click.option("--schema", "schemas", multiple=True, help="Only these schemas (repeatable).")
@click.option("--table", "tables", multiple=True, help="Only these SCHEMA.TABLEs (repeatable).")
@click.option("--format", "fmt", type=FORMATS, default="human", show_default=True)
@click.option(
    "--output",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the report here instead of stdout.",
)
@click.option(
    "--fail-on",
    type=LEVELS,
    default="low",
    show_default=True,
    help="Exit 1 on findings at or above this severity.",
)
@handled
def audit_command(
    dsn: str,
    app_role: str | None,
    app_dsn: str | None,
    pooler_dsn: str | None,
    tenant_column: str,
    setting: str | None,
    schemas: tuple[str, ...],
    tables: tuple[str, ...],
    fmt: str,
    output: str | None,
    fail_on: str,
) -> None:
    """Audit a live database for tenant-isolation leaks; exit 0 clean, 1 findings, 2 error.

    Every finding has a rule code, a severity, the object, why it leaks and the SQL that
    fixes it. Works on databases tenantguard did not create.
    """
    import sys

    from tenantguard._cli_util import err
    from tenantguard.admin.connect import admin_connect
    from tenantguard.tooling.audit import audit_database
    from tenantguard.tooling.findings import Severity, exit_code
    from tenantguard.tooling.report import write

    if (app_role is None) == (app_dsn is None):
        raise click.UsageError("pass exactly one of --app-role or --app-dsn")
    with admin_connect(dsn, autocommit=True) as conn:
        report = audit_database(
            conn,
            app_role=app_role,
            app_dsn=app_dsn,
            tenant_column=tenant_column,
            setting=setting,
            schemas=list(schemas) or None,
            tables=list(tables) or None,
            pooler_dsn=pooler_dsn,
        )
    write(report, fmt, output, err)  # type: ignore[arg-type]
    sys.exit(exit_code(report, Severity.parse(fail_on)))
