"""What a live tool (audit, probe) is pointed at: the runtime role, schemas, tables.

Names that match nothing are mistakes, not clean results: each check raises a
:class:`~tenantguard.errors.UsageError` (exit 2) that says what to pass instead.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import psycopg

from tenantguard.admin.connect import admin_connect
from tenantguard.core.names import QualifiedName
from tenantguard.errors import UsageError

__all__ = [
    "check_role",
    "check_schemas",
    "check_setting",
    "check_targets",
    "resolve_app_role",
    "tenant_columns_meta",
]


def resolve_app_role(app_role: str | None, app_dsn: str | None, tool: str) -> str:
    """The runtime role: given, or the login role of *app_dsn* (one connection)."""
    if app_role is not None:
        return app_role
    if app_dsn is None:
        raise UsageError(
            f"the {tool} needs the runtime role", hint="pass --app-role ROLE or --app-dsn DSN"
        )
    with admin_connect(app_dsn, autocommit=True) as app:
        row = app.execute("SELECT current_user::text").fetchone()
    return str(row[0]) if row else ""


def check_role(conn: psycopg.Connection[Any], role: str) -> None:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s)", (role,)
    ).fetchone()
    if not (row and row[0]):
        raise UsageError(
            f"role {role!r} does not exist",
            hint="pass the role the application logs in as (--app-role, case-sensitive), "
            "or its DSN (--app-dsn)",
        )


def check_schemas(conn: psycopg.Connection[Any], schemas: list[str] | None, tool: str) -> None:
    if not schemas:
        return
    rows = conn.execute(
        "SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)", (schemas,)
    ).fetchall()
    missing = sorted(set(schemas) - {r[0] for r in rows})
    if missing:
        raise UsageError(
            f"no schema {', '.join(map(repr, missing))} in this database: nothing to {tool} there",
            hint="check --schema (names are case-sensitive, as in \\dn) and the DSN's dbname",
        )


def check_targets(
    conn: psycopg.Connection[Any],
    found: Collection[QualifiedName],
    column: str,
    schemas: list[str] | None,
    tables: list[str] | None,
    tool: str,
) -> None:
    """*found* are the tenant tables the tool will look at; *tables* what the user named."""
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
                    f"no table {', '.join(map(str, absent))}: no tenant table by that name",
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
            f"no table has a column {column!r}{where}: nothing to {tool}",
            hint="pass --tenant-column (the column that holds the tenant id) and check the DSN",
        )


def _custom_setting(name: str) -> bool:
    """A custom setting name as PostgreSQL accepts it: ``prefix.name`` (dots, no spaces)."""
    parts = name.split(".")
    return len(parts) >= 2 and all(p and not any(c.isspace() for c in p) for p in parts)


def check_setting(given: str | None, read: Collection[str], tool: str) -> None:
    """*given* (``--setting``) must be a setting the policies or helpers read (*read*).

    A typo would otherwise audit every policy against a setting nothing uses: no fail-open
    predicate found, no default found, a clean report that proves nothing."""
    if given is None:
        return
    if not _custom_setting(given):
        raise UsageError(
            f"--setting {given!r} is not a custom setting name (like app.tenant_id)",
            hint="pass the name the policies read with current_setting(...), or leave "
            "--setting out to infer it",
        )
    if read and given not in read:
        raise UsageError(
            f"no policy or policy helper reads the setting {given!r}: nothing to {tool} with it",
            hint=f"they read {', '.join(sorted(read))}; pass one of those (names are "
            "case-sensitive) or leave --setting out to infer it",
        )


def tenant_columns_meta(tables: Collection[Any], default: str) -> dict[str, Any]:
    """The tenant columns that are not *default*: given (``TABLE=COLUMN``) or inferred."""
    out: dict[str, Any] = {}
    other = {t.label: t.tenant_column for t in tables if t.tenant_column != default}
    if other:
        out["tenant_columns"] = other
    inferred = {
        t.label: f"{t.tenant_column} ({t.inferred_from})" for t in tables if t.inferred_from
    }
    if inferred:
        out["inferred_tenant_columns"] = inferred
    return out
