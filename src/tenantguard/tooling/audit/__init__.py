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
from tenantguard.core.names import QualifiedName
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
    _check_role(conn, app_role)
    _check_schemas(conn, schemas)
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
    _check_targets(conn, ctx, tenant_column, schemas, tables)
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
            **({"foreign_tenant_tables": len(ctx.foreign_tables)} if ctx.foreign_tables else {}),
            **({"pooler": pooler.version, "pool_mode": pooler.pool_mode} if pooler else {}),
        },
    )
    for _rule, check in all_rules():
        report.findings.extend(check(ctx))
    report.meta["duration_s"] = round(time.monotonic() - started, 3)
    return report


def _check_role(conn: psycopg.Connection[Any], role: str) -> None:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s)", (role,)
    ).fetchone()
    if not (row and row[0]):
        raise UsageError(
            f"role {role!r} does not exist",
            hint="pass the role the application logs in as (--app-role, case-sensitive), "
            "or its DSN (--app-dsn)",
        )


def _check_schemas(conn: psycopg.Connection[Any], schemas: list[str] | None) -> None:
    if not schemas:
        return
    rows = conn.execute(
        "SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)", (schemas,)
    ).fetchall()
    missing = sorted(set(schemas) - {r[0] for r in rows})
    if missing:
        raise UsageError(
            f"no schema {', '.join(map(repr, missing))} in this database: nothing to audit there",
            hint="check --schema (names are case-sensitive, as in \\dn) and the DSN's dbname",
        )


def _check_targets(
    conn: psycopg.Connection[Any],
    ctx: AuditContext,
    column: str,
    schemas: list[str] | None,
    tables: list[str] | None,
) -> None:
    """Names that match nothing are mistakes, not clean results."""
    found = {t.name for t in (*ctx.tables, *ctx.foreign_tables)}
    if tables:
        wanted = [QualifiedName.parse(x) for x in tables]
        missing = [w for w in dict.fromkeys(wanted) if w not in found]
        if missing:
            rows = conn.execute(
                "SELECT n.nspname::text, c.relname::text, EXISTS (SELECT 1 FROM "
                "pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = %s "
                "AND a.attnum > 0 AND NOT a.attisdropped) "
                "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'f') "
                "AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                (column, [m.schema for m in missing], [m.name for m in missing]),
            ).fetchall()
            exists = {QualifiedName(r[0], r[1]): bool(r[2]) for r in rows}
            absent = [m for m in missing if m not in exists]
            if absent:
                raise UsageError(
                    f"no table {', '.join(map(str, absent))}",
                    hint="name tables as SCHEMA.TABLE (an unqualified name means public.NAME)",
                )
            no_column = [m for m in missing if not exists[m]]
            if no_column:
                raise UsageError(
                    f"{', '.join(map(str, no_column))} {'has' if len(no_column) == 1 else 'have'}"
                    f" no column {column!r}: not a tenant table",
                    hint="check --tenant-column (the column that holds the tenant id), or "
                    "leave the table out of --table",
                )
            raise UsageError(
                f"{', '.join(map(str, missing))} not in --schema {', '.join(schemas or [])}",
                hint="add its schema to --schema, or leave it out of --table",
            )
    if not found:
        where = f" in schema(s) {', '.join(schemas)}" if schemas else ""
        raise UsageError(
            f"no table has a column {column!r}{where}: nothing to audit",
            hint="pass --tenant-column (the column that holds the tenant id) and check the DSN",
        )
