"""``tenantguard audit``: prove, from the live catalog, that a database is isolated.

Read-only: catalog queries, plus queries run as the runtime role inside transactions
that roll back: on the ``app_dsn`` login when given, else after ``SET LOCAL ROLE`` (a
superuser, a member of the runtime role, or an admin that can grant itself that
membership inside the rolled-back transaction: the managed-database master user). A
check that cannot run is a TGA190 finding, never a clean result.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import psycopg

from tenantguard.admin.connect import describe_dsn
from tenantguard.core.names import QualifiedName
from tenantguard.tooling._runas import resolve_access
from tenantguard.tooling._scope import (
    check_role,
    check_schemas,
    check_setting,
    check_targets,
    resolve_app_role,
    tenant_columns_meta,
)
from tenantguard.tooling.audit.pooler import load_pooler
from tenantguard.tooling.audit.rules import REGISTRY, RULES
from tenantguard.tooling.catalog import AuditContext, load_context, settings_in_use
from tenantguard.tooling.findings import Report

__all__ = ["RULES", "AuditContext", "audit_database"]


def audit_database(
    conn: psycopg.Connection[Any],
    *,
    app_role: str | None = None,
    app_dsn: str | None = None,
    tenant_column: str = "tenant_id",
    tenant_columns: Mapping[str, str] | None = None,
    setting: str | None = None,
    schemas: list[str] | None = None,
    tables: list[str] | None = None,
    pooler_dsn: str | None = None,
) -> Report:
    """Run every audit rule against the database *conn* (an autocommit admin connection).

    *pooler_dsn*: a PgBouncer in front of the database; its admin console (database
    ``pgbouncer``, a user in ``admin_users`` or ``stats_users``) is read for TGA171.
    """
    app_role = resolve_app_role(app_role, app_dsn, "audit")
    started = time.monotonic()
    check_role(conn, app_role)
    check_schemas(conn, schemas, "audit")
    pooler = load_pooler(pooler_dsn) if pooler_dsn else None
    ctx = load_context(
        conn,
        runtime_role=app_role,
        tenant_column=tenant_column,
        setting=setting,
        schemas=schemas,
        tables=tables,
        tenant_columns={QualifiedName.parse(k): v for k, v in (tenant_columns or {}).items()},
        app_dsn=app_dsn,
    )
    found = {t.name for t in (*ctx.tables, *ctx.foreign_tables)}
    check_targets(conn, found, tenant_column, schemas, tables, "audit")
    check_setting(setting, settings_in_use(conn, ctx), "audit")
    ctx.pooler = pooler
    ctx.access = resolve_access(conn, app_role, app_dsn)
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
            **tenant_columns_meta(ctx.tables, tenant_column),
            **({"foreign_tenant_tables": len(ctx.foreign_tables)} if ctx.foreign_tables else {}),
            **({"pooler": pooler.version, "pool_mode": pooler.pool_mode} if pooler else {}),
        },
    )
    try:
        for rule in REGISTRY.checks():
            report.findings.extend(rule.check(ctx))
    finally:
        ctx.access.close()
    report.meta["runtime_access"] = ctx.access.method or "none"
    report.meta["duration_s"] = round(time.monotonic() - started, 3)
    return report
