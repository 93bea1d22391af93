"""``tenantguard audit``: prove, from the live catalog, that a database is isolated.

Read-only: catalog queries, plus queries run as the runtime role inside transactions
that roll back (``SET LOCAL ROLE``), so the admin must be a superuser or a member of
the runtime role.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from tenantguard.admin.connect import admin_connect, describe_dsn
from tenantguard.errors import UsageError
from tenantguard.tooling.audit.catalog import AuditContext, load_context
from tenantguard.tooling.audit.pooler import load_pooler
from tenantguard.tooling.audit.rules import RULES, all_rules
from tenantguard.tooling.findings import Report

__all__ = ["RULES", "AuditContext", "audit_database"]


def audit_database(
    conn: psycopg.Connection[Any],
    *,
    app_role: str | None = None,
    app_dsn: str | None = None,
    tenant_column: str = "tenant_id",
    setting: str | None = None,
    schemas: list[str] | None = None,
    tables: list[str] | None = None,
    pooler_dsn: str | None = None,
) -> Report:
    """Run every audit rule against the database *conn* (an autocommit admin connection).

    *pooler_dsn*: a PgBouncer in front of the database; its admin console (database
    ``pgbouncer``, a user in ``admin_users`` or ``stats_users``) is read for TGA171.
    """
    if app_role is None and app_dsn is None:
        raise UsageError(
            "the audit needs the runtime role", hint="pass --app-role ROLE or --app-dsn DSN"
        )
    if app_role is None:
        assert app_dsn is not None
        with admin_connect(app_dsn, autocommit=True) as app:
            row = app.execute("SELECT current_user::text").fetchone()
            app_role = str(row[0]) if row else ""
    started = time.monotonic()
    pooler = load_pooler(pooler_dsn) if pooler_dsn else None
    ctx = load_context(
        conn,
        runtime_role=app_role,
        tenant_column=tenant_column,
        setting=setting,
        schemas=schemas,
        tables=tables,
        app_dsn=app_dsn,
    )
    ctx.pooler = pooler
    report = Report(
        tool="audit",
        target=describe_dsn(conn.info.dsn),
        rules=list(RULES),
        meta={
            "server_version_num": ctx.server_version_num,
            "runtime_role": app_role,
            "tenant_column": tenant_column,
            "setting": ctx.setting,
            "tenant_tables": len(ctx.tables),
            **({"pooler": pooler.version, "pool_mode": pooler.pool_mode} if pooler else {}),
        },
    )
    for _rule, check in all_rules():
        report.findings.extend(check(ctx))
    report.meta["duration_s"] = round(time.monotonic() - started, 3)
    return report
