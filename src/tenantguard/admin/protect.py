"""``tenantguard protect``: RLS, policies and indexes for tenant tables, idempotently."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql

from tenantguard.admin.install import signing_installed
from tenantguard.core.names import QualifiedName
from tenantguard.core.sqlbuild import (
    PolicyState,
    ProtectSpec,
    TableState,
    grant_statements,
    protect_statements,
    render,
)
from tenantguard.errors import MissingTenantColumn, NotInstalledError, TableNotFoundError

__all__ = [
    "ProtectResult",
    "TablePlan",
    "insert_sequences",
    "plan_protect",
    "protect",
    "runtime_grants",
]

_CMD = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}

_TABLE_QUERY = """
SELECT c.oid, c.relkind, c.relrowsecurity, c.relforcerowsecurity
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s
"""
_COLUMN_QUERY = """
SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnum
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = %s AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
"""
_PK_QUERY = """
SELECT a.attname::text
FROM pg_catalog.pg_index i
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY k.ord
"""
_POLICY_QUERY = """
SELECT p.polname::text, p.polpermissive, p.polcmd::text,
       pg_catalog.obj_description(p.oid, 'pg_policy')
FROM pg_catalog.pg_policy p WHERE p.polrelid = %s
"""
# Index key lists (attnums, expressions show as 0) of valid, non-partial indexes.
_INDEX_QUERY = """
SELECT i.indkey::int2[] FROM pg_catalog.pg_index i
WHERE i.indrelid = %s AND i.indisvalid AND i.indpred IS NULL
"""
_FK_QUERY = """
SELECT con.conname::text, con.conkey::int2[], con.confrelid::regclass::text
FROM pg_catalog.pg_constraint con
WHERE con.conrelid = %s AND con.contype = 'f'
"""

# Sequences the tables' column defaults draw from (serial columns: DEFAULT nextval(...)),
# found through the dependency the default expression records on the sequence.
_DEFAULT_SEQUENCE_QUERY = """
SELECT DISTINCT sn.nspname::text, s.relname::text
FROM unnest(%s::text[], %s::text[]) AS t(nsp, rel)
JOIN pg_catalog.pg_namespace tn ON tn.nspname = t.nsp
JOIN pg_catalog.pg_class c ON c.relnamespace = tn.oid AND c.relname = t.rel
JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::regclass
     AND d.objid = ad.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
ORDER BY 1, 2
"""


@dataclass
class TablePlan:
    spec: ProtectSpec
    statements: list[str]
    warnings: list[str] = field(default_factory=list)


@dataclass
class ProtectResult:
    tables: list[TablePlan] = field(default_factory=list)
    dry_run: bool = False
    scope_statements: list[str] = field(default_factory=list)

    @property
    def statements(self) -> list[str]:
        return [s for t in self.tables for s in t.statements]

    @property
    def warnings(self) -> list[str]:
        return [w for t in self.tables for w in t.warnings]


def _plan_table(
    conn: psycopg.Connection[Any],
    table: QualifiedName,
    tenant_column: str,
    user_column: str | None,
    user_scope: Literal["write", "all"],
    helper_schema: str,
    role_scope: bool = False,
    signed: bool = False,
) -> tuple[ProtectSpec, list[Any], list[str]]:
    row = conn.execute(_TABLE_QUERY, (table.schema, table.name)).fetchone()
    if row is None:
        raise TableNotFoundError(str(table))
    oid, relkind, rls, forced = row
    if relkind not in ("r", "p"):
        raise TableNotFoundError(f"{table} (it is not a table, relkind {relkind!r})")
    col = conn.execute(_COLUMN_QUERY, (oid, tenant_column)).fetchone()
    if col is None:
        raise MissingTenantColumn(str(table), tenant_column)
    tenant_type, tenant_attnum = col
    user_type = None
    if user_column is not None:
        ucol = conn.execute(_COLUMN_QUERY, (oid, user_column)).fetchone()
        if ucol is None:
            raise MissingTenantColumn(str(table), user_column)
        user_type = ucol[0]
    pk = tuple(r[0] for r in conn.execute(_PK_QUERY, (oid,)).fetchall())
    spec = ProtectSpec(
        table=table,
        tenant_column=tenant_column,
        tenant_type=tenant_type,
        pk_columns=pk,
        user_column=user_column,
        user_type=user_type,
        user_scope=user_scope,
        helper_schema=helper_schema,
        role_scope=role_scope,
        signed=signed,
    )
    policies = {
        name: PolicyState(permissive, _CMD.get(cmd, cmd), comment)
        for name, permissive, cmd, comment in conn.execute(_POLICY_QUERY, (oid,)).fetchall()
    }
    pk_attnums: list[int] = []
    if pk:
        rows = conn.execute(
            "SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attname = ANY(%s)",
            (oid, list(pk)),
        ).fetchall()
        by_name = dict(
            conn.execute(
                "SELECT attname::text, attnum FROM pg_catalog.pg_attribute "
                "WHERE attrelid = %s AND attname = ANY(%s)",
                (oid, list(pk)),
            ).fetchall()
        )
        pk_attnums = [by_name[c] for c in pk if c != tenant_column] if rows else []
    wanted_prefix = [tenant_attnum, *pk_attnums]
    has_index = any(
        list(keys[: len(wanted_prefix)]) == wanted_prefix
        for (keys,) in conn.execute(_INDEX_QUERY, (oid,)).fetchall()
    )
    state = TableState(
        rls_enabled=rls, rls_forced=forced, policies=policies, has_tenant_index=has_index
    )
    warnings = [
        f"{table}: foreign key {name} -> {target} does not lead with {tenant_column}; "
        f"a row could reference another tenant's row. Make it ({tenant_column}, ...) "
        f"referencing a ({tenant_column}, ...) unique key."
        for name, keys, target in conn.execute(_FK_QUERY, (oid,)).fetchall()
        if not keys or keys[0] != tenant_attnum
    ]
    return spec, protect_statements(spec, state), warnings


def plan_protect(
    conn: psycopg.Connection[Any],
    tables: Sequence[str | QualifiedName],
    *,
    tenant_column: str = "tenant_id",
    user_column: str | None = None,
    user_scope: Literal["write", "all"] = "write",
    helper_schema: str = "tenantguard",
    tenant_columns: Mapping[str | QualifiedName, str] | None = None,
    role_scope: bool = False,
) -> list[tuple[TablePlan, list[Any]]]:
    """Inspect the catalog and return, per table, what ``protect`` would run.

    *tenant_columns* maps a table to its tenant column where it is not *tenant_column*
    (``{"public.companies": "id", "public.campaigns": "company_id"}``: the tenant root
    table keyed by its own id, and a child keyed by the column that references it)."""
    per_table = {
        k if isinstance(k, QualifiedName) else QualifiedName.parse(k): v
        for k, v in (tenant_columns or {}).items()
    }
    if conn.execute(
        "SELECT pg_catalog.to_regprocedure(%s)", (f"{helper_schema}.current_tenant()",)
    ).fetchone() == (None,):
        raise NotInstalledError(f"the helper function {helper_schema}.current_tenant()")
    # With signing installed the policies read the verifying view directly.
    signed = signing_installed(conn, helper_schema)
    out = []
    for t in tables:
        name = t if isinstance(t, QualifiedName) else QualifiedName.parse(t)
        spec, stmts, warnings = _plan_table(
            conn,
            name,
            per_table.get(name, tenant_column),
            user_column,
            user_scope,
            helper_schema,
            role_scope,
            signed,
        )
        out.append((TablePlan(spec, [render(s) + ";" for s in stmts], warnings), stmts))
    return out


def protect(
    conn: psycopg.Connection[Any],
    tables: Sequence[str | QualifiedName],
    *,
    tenant_column: str = "tenant_id",
    user_column: str | None = None,
    user_scope: Literal["write", "all"] = "write",
    helper_schema: str = "tenantguard",
    role_scope: bool = False,
    dry_run: bool = False,
    tenant_columns: Mapping[str | QualifiedName, str] | None = None,
) -> ProtectResult:
    """Protect *tables* in one transaction; with *dry_run* only plan (nothing changes).
    *tenant_columns*: per-table tenant columns, as for :func:`plan_protect`.

    With *role_scope* the policies compare the tenant with the session's scope
    (per-tenant logins, break-glass grants, else the bound setting; see
    :mod:`tenantguard.admin._scope`), whose objects are created or updated first.
    """
    result = ProtectResult(dry_run=dry_run)
    with conn.transaction(force_rollback=dry_run):
        if role_scope:
            from tenantguard.admin._scope import ensure_scope

            result.scope_statements = ensure_scope(conn, helper_schema)
        for plan, stmts in plan_protect(
            conn,
            tables,
            tenant_column=tenant_column,
            user_column=user_column,
            user_scope=user_scope,
            helper_schema=helper_schema,
            tenant_columns=tenant_columns,
            role_scope=role_scope,
        ):
            result.tables.append(plan)
            if not dry_run:
                for stmt in stmts:
                    conn.execute(stmt)
    return result


def insert_sequences(
    conn: psycopg.Connection[Any], tables: Sequence[QualifiedName]
) -> list[QualifiedName]:
    """The sequences that inserts into *tables* call ``nextval()`` on through a column
    default (``serial``/``bigserial``, or ``DEFAULT nextval('shared_seq')``)."""
    rows = conn.execute(
        _DEFAULT_SEQUENCE_QUERY, ([t.schema for t in tables], [t.name for t in tables])
    ).fetchall()
    return [QualifiedName(nsp, rel) for nsp, rel in rows]


def runtime_grants(
    conn: psycopg.Connection[Any], tables: Sequence[str | QualifiedName], role: str
) -> list[sql.Composed]:
    """What ``protect --grant-to ROLE`` grants: schema USAGE, the DML on *tables*, and
    USAGE on the sequences their inserts draw ids from."""
    names = [t if isinstance(t, QualifiedName) else QualifiedName.parse(t) for t in tables]
    return grant_statements(names, role, sequences=insert_sequences(conn, names))
