"""Catalog facts the audit rules share, loaded once per run (read-only queries).

Works on databases tenantguard did not create: tenant tables are found by their
tenant column, the tenant setting is inferred from the policies when not given, and
policy expressions are parsed with PostgreSQL's grammar (pglast), never regexes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import psycopg
from pglast import ast, parse_sql
from pglast.parser import ParseError

from tenantguard.core.names import QualifiedName
from tenantguard.core.rolecheck import ROLE_CHECK_QUERY, role_params
from tenantguard.core.sqlbuild import ProtectSpec, protect_statements, render

__all__ = ["AuditContext", "Policy", "Table", "load_context"]

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "tenantguard")
# Function rules look at tenantguard's own helpers too: they get no exemption.
FUNCTION_EXCLUDED_SCHEMAS = ("pg_catalog", "information_schema")


@dataclass
class Policy:
    name: str
    permissive: bool
    command: str  # ALL SELECT INSERT UPDATE DELETE
    roles: list[str]
    qual: str | None
    with_check: str | None

    @property
    def label(self) -> str:
        return f"policy {self.name}"


@dataclass
class Table:
    oid: int
    name: QualifiedName
    relkind: str
    rls: bool
    forced: bool
    is_partition: bool
    owner: str
    tenant_type: str
    tenant_attnum: int
    parents: list[str]
    rows_estimate: float
    policies: list[Policy] = field(default_factory=list)
    privileges: set[str] = field(default_factory=set)  # of the runtime role

    @property
    def label(self) -> str:
        return str(self.name)

    @property
    def restrictive_guard(self) -> Policy | None:
        """A restrictive policy for all commands whose USING and check mention the tenant."""
        for p in self.policies:
            if not p.permissive and p.command == "ALL" and _mentions(p.qual, self.tenant_column):
                return p
        return None

    tenant_column: str = "tenant_id"

    def protect_sql(self, pk: tuple[str, ...] = ()) -> str:
        try:
            spec = ProtectSpec(self.name, self.tenant_column, self.tenant_type, pk)
        except Exception:  # an unsupported column type: say what to do instead
            return f"-- tenantguard protect {self.name} (tenant column type {self.tenant_type})"
        return "\n".join(render(s) + ";" for s in protect_statements(spec))


def _mentions(expr: str | None, column: str) -> bool:
    """Does the expression reference *column* (as a column, per the SQL grammar)?"""
    return any(
        isinstance(n, ast.ColumnRef) and getattr((n.fields or (None,))[-1], "sval", None) == column
        for n in walk_expr(expr)
    )


def walk_expr(expr: str | None) -> list[ast.Node]:
    """All nodes of a deparsed policy expression (empty if it does not parse)."""
    if not expr:
        return []
    try:
        stmts = parse_sql(f"SELECT {expr}")
    except ParseError:
        return []
    out: list[ast.Node] = []
    stack: list[Any] = [stmts]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            out.append(item)
            stack.extend(getattr(item, name) for name in item)
        elif isinstance(item, tuple | list):
            stack.extend(item)
    return out


def func_names(expr: str | None) -> list[tuple[str | None, str]]:
    """(schema or None, function name) for every function call in *expr*."""
    names: list[tuple[str | None, str]] = []
    for n in walk_expr(expr):
        if isinstance(n, ast.FuncCall):
            parts = [getattr(p, "sval", "") for p in n.funcname or ()]
            names.append((parts[-2] if len(parts) > 1 else None, parts[-1]))
    return names


def settings_read(expr: str | None) -> set[str]:
    """Names passed as a literal to current_setting(...) in *expr*."""
    out: set[str] = set()
    for n in walk_expr(expr):
        if isinstance(n, ast.FuncCall):
            fname = getattr((n.funcname or ())[-1], "sval", "")
            if fname == "current_setting" and n.args:
                arg = n.args[0]
                if isinstance(arg, ast.TypeCast):
                    arg = arg.arg
                if isinstance(arg, ast.A_Const) and isinstance(arg.val, ast.String):
                    out.add(arg.val.sval or "")
    return out


_TABLES = """
SELECT c.oid::int, n.nspname::text, c.relname::text, c.relkind::text, c.relrowsecurity,
       c.relforcerowsecurity, c.relispartition, pg_catalog.pg_get_userbyid(c.relowner)::text,
       pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnum::int,
       ARRAY(SELECT quote_ident(pn.nspname) || '.' || quote_ident(pc.relname)
             FROM pg_catalog.pg_inherits i
             JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent
             JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
             WHERE i.inhrelid = c.oid),
       c.reltuples::float8
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a
  ON a.attrelid = c.oid AND a.attname = %(col)s AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p')
  AND n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%'
  AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))
ORDER BY 2, 3
"""
_POLICIES = """
SELECT p.polrelid::int, p.polname::text, p.polpermissive,
       CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                     WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_catalog.pg_get_userbyid(r)::text END
             FROM unnest(p.polroles) r),
       pg_catalog.pg_get_expr(p.polqual, p.polrelid),
       pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)
FROM pg_catalog.pg_policy p
WHERE p.polrelid = ANY(%(oids)s)
"""
_PRIVS = """
SELECT t.oid::int, ARRAY(SELECT p FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE']) p
                    WHERE pg_catalog.has_table_privilege(%(role)s, t.oid, p))
FROM unnest(%(oids)s::oid[]) AS t(oid)
"""


@dataclass
class AuditContext:
    """Everything a rule may read. ``conn`` is an admin connection (read-only use)."""

    conn: psycopg.Connection[Any]
    runtime_role: str
    tenant_column: str
    setting: str
    user_setting: str
    tables: list[Table]
    server_version_num: int
    app_dsn: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def role_row(self) -> tuple[Any, ...] | None:
        return self.conn.execute(
            ROLE_CHECK_QUERY,
            role_params(self.runtime_role, self.tenant_column, self.setting, self.user_setting),
        ).fetchone()

    @cached_property
    def tenant_oids(self) -> list[int]:
        return [t.oid for t in self.tables]

    def fetch(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(query, params).fetchall()


def infer_setting(conn: psycopg.Connection[Any], policies: list[Policy]) -> str:
    """The tenant setting: from tenantguard's helper if installed, else from the policies."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = 'tenantguard' AND p.proname = 'tenant_setting')"
    ).fetchone()
    if row and row[0]:
        got = conn.execute("SELECT tenantguard.tenant_setting()").fetchone()
        if got and got[0]:
            return str(got[0])
    seen: dict[str, int] = {}
    for p in policies:
        for expr in (p.qual, p.with_check):
            for name in settings_read(expr):
                seen[name] = seen.get(name, 0) + 1
    return max(seen, key=lambda k: seen[k]) if seen else "app.tenant_id"


def load_context(
    conn: psycopg.Connection[Any],
    *,
    runtime_role: str,
    tenant_column: str = "tenant_id",
    setting: str | None = None,
    user_setting: str = "app.user_id",
    schemas: list[str] | None = None,
    tables: list[str] | None = None,
    app_dsn: str | None = None,
) -> AuditContext:
    rows = conn.execute(
        _TABLES, {"col": tenant_column, "system": list(SYSTEM_SCHEMAS), "schemas": schemas}
    ).fetchall()
    found: list[Table] = []
    for r in rows:
        t = Table(
            r[0],
            QualifiedName(r[1], r[2]),
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            r[9],
            list(r[10]),
            r[11],
        )
        t.tenant_column = tenant_column
        found.append(t)
    if tables:
        wanted = {QualifiedName.parse(x) for x in tables}
        found = [t for t in found if t.name in wanted] + []
    oids = [t.oid for t in found]
    by_oid = {t.oid: t for t in found}
    all_policies: list[Policy] = []
    for relid, name, permissive, cmd, roles, qual, check in conn.execute(
        _POLICIES, {"oids": oids}
    ).fetchall():
        pol = Policy(name, permissive, cmd, list(roles), qual, check)
        by_oid[relid].policies.append(pol)
        all_policies.append(pol)
    for oid, privs in conn.execute(_PRIVS, {"role": runtime_role, "oids": oids}).fetchall():
        by_oid[oid].privileges = set(privs)
    version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
    return AuditContext(
        conn=conn,
        runtime_role=runtime_role,
        tenant_column=tenant_column,
        setting=setting or infer_setting(conn, all_policies),
        user_setting=user_setting,
        tables=found,
        server_version_num=version,
        app_dsn=app_dsn,
    )
