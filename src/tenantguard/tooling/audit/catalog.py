"""Catalog facts the audit rules share, loaded once per run (read-only queries).

Works on databases tenantguard did not create: tenant tables are found by their
tenant column, the tenant setting is inferred from the policies when not given, and
policy expressions are parsed with PostgreSQL's grammar (pglast), never regexes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import psycopg
from pglast import ast, enums, parse_plpgsql, parse_sql
from pglast.parser import ParseError
from psycopg import sql

from tenantguard.core.names import QualifiedName
from tenantguard.core.rolecheck import ROLE_CHECK_QUERY, role_params
from tenantguard.core.sqlbuild import ProtectSpec, protect_statements, render
from tenantguard.tooling._pgast import walk
from tenantguard.tooling._runas import RuntimeAccess

__all__ = [
    "AuditContext",
    "Function",
    "Policy",
    "Table",
    "is_pinned",
    "load_context",
    "parse_expr",
    "relations_in",
    "sql_comment",
    "view_filters_tenant",
]

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

    def covers(self, command: str) -> bool:
        """Does the policy apply to *command* (SELECT, INSERT, UPDATE, DELETE)?"""
        return self.command in ("ALL", command)

    @property
    def effective_check(self) -> str | None:
        """The expression new rows are checked against (USING when WITH CHECK is absent)."""
        if self.with_check is not None:
            return self.with_check
        return self.qual if self.command in ("ALL", "UPDATE") else None


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
    # What the runtime role can do to the table directly: its table (or column)
    # privileges, and none at all without USAGE on the table's schema (it cannot name it).
    privileges: set[str] = field(default_factory=set)
    granted: set[str] = field(default_factory=set)  # table privileges, whatever the schema
    schema_usage: bool = True  # the runtime role has USAGE on the table's schema

    @property
    def label(self) -> str:
        return str(self.name)

    def unreachable(self, role: str) -> str | None:
        """Why *role* (the runtime role) cannot read or change the table directly, naming
        the privilege it lacks; None when it can."""
        if self.privileges:
            return None
        if self.granted and not self.schema_usage:
            return (
                f"{role!r} has {', '.join(sorted(self.granted))} on it but no USAGE on schema "
                f"{self.name.schema!r}, so it cannot name the table"
            )
        return (
            f"{role!r} has no SELECT, INSERT, UPDATE, DELETE or TRUNCATE on it (not directly, "
            "not through PUBLIC nor a role it belongs to)"
        )

    @property
    def restrictive_guard(self) -> Policy | None:
        """A restrictive policy for all commands whose USING and check mention the tenant."""
        for p in self.policies:
            if not p.permissive and p.command == "ALL" and _mentions(p.qual, self.tenant_column):
                return p
        return None

    tenant_column: str = "tenant_id"
    inferred_from: str | None = None  # why its tenant column was inferred (None: it was not)

    def protect_sql(self, pk: tuple[str, ...] = ()) -> str:
        return protect_fix_sql(self.name, self.tenant_column, self.tenant_type, pk)


def protect_fix_sql(
    name: QualifiedName, column: str, type_name: str, pk: tuple[str, ...] = ()
) -> str:
    """What ``tenantguard protect`` runs on a table, as SQL to paste (safe to run again)."""
    try:
        spec = ProtectSpec(name, column, type_name, pk)
    except Exception:  # an unsupported column type: say what to do instead
        return sql_comment(f"tenantguard protect {name} (tenant column type {type_name})")
    return "\n".join(render(s) + ";" for s in protect_statements(spec))


def sql_comment(text: str) -> str:
    """*text* as SQL ``--`` comment lines: every line gets its own ``--``, so a catalog
    name with a newline in it cannot end the comment and turn into SQL."""
    return "\n".join("-- " + line for line in (text.splitlines() or [""]))


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
    return list(walk(stmts))


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
       c.reltuples::float8, a.attname::text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a
  ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 AND a.attname = coalesce(
       (SELECT m.col FROM unnest(%(map_schemas)s::text[], %(map_tables)s::text[],
                                 %(map_columns)s::text[]) AS m(s, t, col)
        WHERE m.s = n.nspname AND m.t = c.relname),
       (SELECT i.col FROM unnest(%(inferred)s::int[], %(inferred_columns)s::text[]) AS i(oid, col)
        WHERE i.oid = c.oid),
       %(col)s)
WHERE c.relkind IN ('r', 'p', 'f')
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
                    WHERE pg_catalog.has_table_privilege(%(role)s, t.oid, p)
                       -- a grant on some columns reaches the rows too
                       OR (p IN ('SELECT', 'INSERT', 'UPDATE')
                           AND pg_catalog.has_any_column_privilege(%(role)s, t.oid, p))),
       pg_catalog.has_schema_privilege(%(role)s, c.relnamespace, 'USAGE')
FROM unnest(%(oids)s::oid[]) AS t(oid)
JOIN pg_catalog.pg_class c ON c.oid = t.oid
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
    pooler: Any = None  # tenantguard.tooling.audit.pooler.PoolerInfo when --pooler-dsn is given
    extra: dict[str, Any] = field(default_factory=dict)
    # Foreign tables with the tenant column (relkind 'f'): they cannot have row level
    # security, so they are kept apart from ``tables`` (which the probe shares).
    foreign_tables: list[Table] = field(default_factory=list)
    # How the live checks act as the runtime role (tenantguard.tooling._runas).
    access: RuntimeAccess | None = None

    def admin_sees_all(self, oid: int) -> bool:
        """Can the admin read every row of relation *oid* (row level security does not
        apply to it there)? Checks that read samples need this, or they prove nothing."""
        row = self.conn.execute(
            "SELECT NOT pg_catalog.row_security_active(%s::oid)", (oid,)
        ).fetchone()
        return bool(row and row[0])

    @cached_property
    def role_row(self) -> tuple[Any, ...] | None:
        return self.conn.execute(
            ROLE_CHECK_QUERY,
            role_params(self.runtime_role, self.tenant_column, self.setting, self.user_setting),
        ).fetchone()

    @cached_property
    def tenant_oids(self) -> list[int]:
        return [t.oid for t in self.tables]

    @cached_property
    def _exempt_owners(self) -> dict[str, list[Table]]:
        """Owner role -> the tenant tables RLS does not apply to for it (not FORCEd)."""
        out: dict[str, list[Table]] = {}
        for t in self.tables:
            if not (t.rls and t.forced):
                out.setdefault(t.owner, []).append(t)
        return out

    def owner_bypass(self, role: str, superuser_or_bypass: bool) -> str | None:
        """Why RLS does not apply to *role* on some tenant table (None: it applies to all).

        A superuser or BYPASSRLS role; or the owner of a tenant table (or a member of its
        owner, which acts with its rights) that does not FORCE row level security."""
        if superuser_or_bypass:
            return f"{role!r} is superuser or BYPASSRLS"
        cache: dict[str, str | None] = self.extra.setdefault("owner_bypass", {})
        if role in cache:
            return cache[role]
        owners = sorted(self._exempt_owners)
        why = None
        if owners:
            rows = self.fetch(
                "SELECT o FROM unnest(%s::text[]) o WHERE pg_catalog.pg_has_role(%s, o, 'USAGE')",
                (owners, role),
            )
            tables = [t.label for (o,) in rows for t in self._exempt_owners[o]]
            if tables:
                shown = ", ".join(tables[:3]) + (" ..." if len(tables) > 3 else "")
                why = f"{role!r} owns {shown} (or is a member of the owner) and RLS is not forced"
        cache[role] = why
        return why

    def fetch(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        return self.conn.execute(query, params).fetchall()

    @cached_property
    def database(self) -> str:
        row = self.conn.execute("SELECT current_database()::text").fetchone()
        return str(row[0]) if row else ""

    @cached_property
    def runtime_roles(self) -> set[str]:
        """'public' and every role the runtime role is a member of (itself included)."""
        rows = self.fetch(
            "SELECT r.rolname::text FROM pg_catalog.pg_roles r "
            "WHERE pg_catalog.pg_has_role(%s, r.oid, 'MEMBER')",
            (self.runtime_role,),
        )
        return {"public", self.runtime_role, *(r[0] for r in rows)}

    def applies(self, policy: Policy) -> bool:
        """Does *policy* apply to the runtime role (directly, via PUBLIC or a membership)?"""
        return any(r in self.runtime_roles for r in policy.roles)

    @cached_property
    def session_schemas(self) -> list[str]:
        """This (admin) session's search_path, as the server deparses names against it."""
        row = self.conn.execute("SELECT current_schemas(false)::text[]").fetchone()
        return list(row[0]) if row else []

    @cached_property
    def builtin_functions(self) -> frozenset[str]:
        rows = self.fetch(
            "SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc p "
            "WHERE p.pronamespace = 'pg_catalog'::regnamespace"
        )
        return frozenset(r[0] for r in rows)

    def is_helper(self, schema: str | None, name: str) -> bool:
        """Is a call to (schema.)name a user function (a tenant helper), not a built-in?"""
        if schema is not None:
            return schema != "pg_catalog"
        return name not in self.builtin_functions

    def pinned(
        self,
        expr: str | ast.Node | None,
        column: str,
        distrust: frozenset[tuple[str | None, str]] = frozenset(),
        distrust_functions: frozenset[tuple[str | None, str]] = frozenset(),
    ) -> bool:
        """Is the policy expression *expr* (text, or an already parsed node) pinned to the
        bound tenant? See :func:`is_pinned`.

        *distrust*: tables whose sub-selects pin nothing; *distrust_functions*: calls
        (schema or None, name) that do not count as tenant helpers."""
        node = expr if isinstance(expr, ast.Node) else parse_expr(expr)
        settings = frozenset((self.setting, self.user_setting))

        def helper(schema: str | None, name: str) -> bool:
            return (schema, name) not in distrust_functions and self.is_helper(schema, name)

        return node is not None and is_pinned(node, column, settings, helper, distrust)

    @cached_property
    def functions(self) -> list[Function]:
        """User functions (not in pg_catalog / information_schema), with their bodies."""
        rows = self.fetch(
            _FUNCTIONS,
            {"role": self.runtime_role, "excluded": list(FUNCTION_EXCLUDED_SCHEMAS)},
        )
        return [Function(*r) for r in rows]

    def tables_named(
        self, schema: str | None, name: str, search_path: list[str] | None = None
    ) -> list[Table]:
        """Tenant tables a reference (schema.)name can resolve to.

        Qualified: that table. Unqualified: the first schema of a pinned *search_path*
        holding a tenant table of that name, else every tenant table of that name (the
        caller's search_path decides, so be conservative)."""
        matches = [t for t in self.tables if t.name.name == name]
        if schema is not None:
            return [t for t in matches if t.name.schema == schema]
        if search_path:
            for s in search_path:
                hit = [t for t in matches if t.name.schema == s]
                if hit:
                    return hit
            return []
        return matches


# Foreign keys out of tables that are not tenant tables, into a tenant table's tenant
# column or a tenant root (the table a tenant column references, by its key): the
# referencing column carries the tenant too.
_INFER = """
WITH tenant(oid, attnum) AS (
    SELECT * FROM unnest(%(oids)s::int[], %(attnums)s::int[])
),
roots(oid, attnum) AS (
    SELECT con.confrelid::int, con.confkey[1]::int FROM pg_catalog.pg_constraint con
    JOIN tenant ON tenant.oid = con.conrelid AND con.conkey = ARRAY[tenant.attnum::int2]
    WHERE con.contype = 'f' AND cardinality(con.confkey) = 1
),
targets(oid, attnum) AS (SELECT * FROM tenant UNION SELECT * FROM roots)
SELECT con.conrelid::int, a.attname::text, quote_ident(tn.nspname) || '.'
       || quote_ident(tc.relname) || '.' || quote_ident(ta.attname)
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(con.conkey, con.confkey) AS k(src, dst) ON true
JOIN targets ON targets.oid = con.confrelid AND targets.attnum = k.dst
JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.src
JOIN pg_catalog.pg_class tc ON tc.oid = con.confrelid
JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
JOIN pg_catalog.pg_attribute ta ON ta.attrelid = con.confrelid AND ta.attnum = k.dst
WHERE con.contype = 'f' AND c.relkind IN ('r', 'p')
  AND NOT (con.conrelid = ANY(%(oids)s::int[]))
  AND NOT (con.conrelid = ANY(SELECT oid FROM roots))
  AND n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%'
  AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))
ORDER BY 1, 2
"""


def infer_tenant_columns(
    conn: psycopg.Connection[Any], tenant: Mapping[int, int], schemas: list[str] | None
) -> dict[int, tuple[str, str]]:
    """Tables with no tenant column of their own whose tenant key is unambiguous: exactly
    one column that references a tenant table's tenant column, or the tenant root table
    (the table tenant columns reference: ``tenants.id``). Repeated until nothing changes,
    so a chain (companies -> campaigns -> ads) is followed. *tenant*: oid -> tenant
    column attnum of the tables found so far. Returns oid -> (column, why)."""
    out: dict[int, tuple[str, str]] = {}
    known = dict(tenant)
    for _ in range(20):  # a chain longer than that is not a schema anyone wrote
        rows = conn.execute(
            _INFER,
            {
                "oids": list(known),
                "attnums": list(known.values()),
                "system": list(SYSTEM_SCHEMAS),
                "schemas": schemas,
            },
        ).fetchall()
        candidates: dict[int, dict[str, str]] = {}
        for relid, column, target in rows:
            candidates.setdefault(relid, {}).setdefault(column, target)
        new = {oid: cols for oid, cols in candidates.items() if len(cols) == 1}
        if not new:
            break
        for oid, cols in new.items():
            ((column, target),) = cols.items()
            out[oid] = (column, f"references {target}")
            got = conn.execute(
                "SELECT attnum::int FROM pg_catalog.pg_attribute WHERE attrelid = %s::oid "
                "AND attname = %s",
                (oid, column),
            ).fetchone()
            known[oid] = int(got[0]) if got else 0
    return out


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


def settings_in_use(conn: psycopg.Connection[Any], ctx: AuditContext) -> set[str]:
    """Every setting the tenant tables' policies read: in the expressions themselves, in
    the user functions they call (their bodies, parsed), and tenantguard's own helper's."""
    out: set[str] = set()
    called: set[str] = set()
    for t in ctx.tables:
        for p in t.policies:
            for expr in (p.qual, p.with_check):
                out |= settings_read(expr)
                called |= {name for _schema, name in func_names(expr)}
    for fn in ctx.functions:
        if fn.name in called and fn.statements:
            for n in iter_nodes(fn.statements):
                if isinstance(n, ast.FuncCall) and _call_name(n)[1] == "current_setting":
                    text = _literal_text(n.args[0]) if n.args else None
                    if text:
                        out.add(text)
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = 'tenantguard' AND p.proname = 'tenant_setting')"
    ).fetchone()
    if row and row[0] and called & {"current_tenant", "current_user_id"}:
        for fn_name in ("tenant_setting", "user_setting"):
            got = conn.execute(
                sql.SQL("SELECT {}.{}()").format(
                    sql.Identifier("tenantguard"), sql.Identifier(fn_name)
                )
            ).fetchone()
            if got and got[0]:
                out.add(str(got[0]))
    return out


def infer_user_setting(conn: psycopg.Connection[Any]) -> str:
    """The user setting: tenantguard's (``tenantguard.user_setting()``) if installed."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = 'tenantguard' AND p.proname = 'user_setting')"
    ).fetchone()
    if row and row[0]:
        got = conn.execute("SELECT tenantguard.user_setting()").fetchone()
        if got and got[0]:
            return str(got[0])
    return "app.user_id"


_FUNCTIONS = """
SELECT p.oid::int, p.oid::regprocedure::text, l.lanname::text, p.prosrc,
       CASE WHEN p.prokind IN ('f', 'p') AND l.lanname IN ('sql', 'plpgsql')
            THEN pg_catalog.pg_get_functiondef(p.oid) END,
       pg_catalog.pg_get_userbyid(p.proowner)::text, o.rolsuper OR o.rolbypassrls,
       p.prosecdef, coalesce(p.proconfig, '{}'::text[]),
       pg_catalog.has_function_privilege(%(role)s, p.oid, 'EXECUTE'),
       n.nspname::text, p.proname::text, pg_catalog.pg_get_function_identity_arguments(p.oid)
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
JOIN pg_catalog.pg_roles o ON o.oid = p.proowner
WHERE n.nspname <> ALL(%(excluded)s) AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY 2
"""


def load_context(
    conn: psycopg.Connection[Any],
    *,
    runtime_role: str,
    tenant_column: str = "tenant_id",
    setting: str | None = None,
    user_setting: str | None = None,
    schemas: list[str] | None = None,
    tables: list[str] | None = None,
    app_dsn: str | None = None,
    tenant_columns: Mapping[QualifiedName, str] | None = None,
) -> AuditContext:
    """The catalog facts for a run. *tenant_column* is every table's tenant column unless
    *tenant_columns* maps the table to another (``companies`` -> ``id``); a table with
    neither gets one inferred where it is unambiguous (see :func:`infer_tenant_columns`)."""
    mapping = dict(tenant_columns or {})
    params: dict[str, Any] = {
        "col": tenant_column,
        "system": list(SYSTEM_SCHEMAS),
        "schemas": schemas,
        "map_schemas": [k.schema for k in mapping],
        "map_tables": [k.name for k in mapping],
        "map_columns": list(mapping.values()),
        "inferred": [],
        "inferred_columns": [],
    }
    rows = conn.execute(_TABLES, params).fetchall()
    inferred = infer_tenant_columns(conn, {int(r[0]): int(r[9]) for r in rows}, schemas)
    if inferred:
        params["inferred"] = list(inferred)
        params["inferred_columns"] = [col for col, _why in inferred.values()]
        rows = conn.execute(_TABLES, params).fetchall()
    found: list[Table] = []
    foreign: list[Table] = []
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
        t.tenant_column = str(r[12])
        if t.oid in inferred:
            t.inferred_from = inferred[t.oid][1]
        (foreign if t.relkind == "f" else found).append(t)
    if tables:
        wanted = {QualifiedName.parse(x) for x in tables}
        found = [t for t in found if t.name in wanted]
        foreign = [t for t in foreign if t.name in wanted]
    oids = [t.oid for t in found]
    by_oid = {t.oid: t for t in found + foreign}
    all_policies: list[Policy] = []
    for relid, name, permissive, cmd, roles, qual, check in conn.execute(
        _POLICIES, {"oids": oids}
    ).fetchall():
        pol = Policy(name, permissive, cmd, list(roles), qual, check)
        by_oid[relid].policies.append(pol)
        all_policies.append(pol)
    all_oids = oids + [t.oid for t in foreign]
    for oid, privs, usage in conn.execute(
        _PRIVS, {"role": runtime_role, "oids": all_oids}
    ).fetchall():
        t = by_oid[oid]
        t.granted, t.schema_usage = set(privs), bool(usage)
        t.privileges = set(privs) if usage else set()
    version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
    return AuditContext(
        conn=conn,
        runtime_role=runtime_role,
        tenant_column=tenant_column,
        setting=setting or infer_setting(conn, all_policies),
        user_setting=user_setting or infer_user_setting(conn),
        tables=found,
        server_version_num=version,
        app_dsn=app_dsn,
        foreign_tables=foreign,
    )


# --- expression analysis (PostgreSQL's grammar via pglast) -----------------------------


def iter_nodes(root: Any, *, into_sublinks: bool = True) -> Iterator[ast.Node]:
    """Every node under *root* (a node, or a tuple/list of them), depth first."""
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            yield item
            if not into_sublinks and isinstance(item, ast.SubLink) and item is not root:
                continue
            stack.extend(getattr(item, name) for name in item)
        elif isinstance(item, tuple | list):
            stack.extend(item)


def parse_expr(expr: str | None) -> ast.Node | None:
    """The parse tree of a deparsed policy expression (None if absent or unparsable)."""
    if not expr:
        return None
    try:
        stmts = parse_sql(f"SELECT {expr}")
    except ParseError:
        return None
    stmt = stmts[0].stmt
    if not isinstance(stmt, ast.SelectStmt) or not stmt.targetList or len(stmt.targetList) != 1:
        return None
    val = stmt.targetList[0].val
    return val if isinstance(val, ast.Node) else None


def relations_in(root: Any) -> list[tuple[str | None, str]]:
    """(schema or None, name) of every table reference (RangeVar) under *root*, CTEs excluded."""
    nodes = list(iter_nodes(root))
    ctes = {n.ctename for n in nodes if isinstance(n, ast.CommonTableExpr)}
    out: list[tuple[str | None, str]] = []
    for n in nodes:
        if isinstance(n, ast.RangeVar) and n.relname:
            if n.schemaname is None and n.relname in ctes:
                continue
            ref = (n.schemaname, n.relname)
            if ref not in out:
                out.append(ref)
    return out


def _column_name(node: Any) -> str | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.ColumnRef) and node.fields:
        last = node.fields[-1]
        return getattr(last, "sval", None)
    return None


def _call_name(node: ast.FuncCall) -> tuple[str | None, str]:
    parts = [getattr(p, "sval", "") for p in node.funcname or ()]
    return (parts[-2] if len(parts) > 1 else None, parts[-1] if parts else "")


def _literal_text(node: Any) -> str | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return node.val.sval
    return None


# tenantguard's session-scope view (``protect --role-scope``): owned by the owner role, in
# a schema the runtime role cannot create in, it yields the session's tenants from the
# bound setting, a per-tenant login or a break-glass grant (tenantguard.admin._scope).
SCOPE_VIEWS = frozenset({("tenantguard", "session_scope")})

_IDENTITY_FUNCS = {
    enums.SQLValueFunctionOp.SVFOP_CURRENT_USER,
    enums.SQLValueFunctionOp.SVFOP_SESSION_USER,
    enums.SQLValueFunctionOp.SVFOP_USER,
    enums.SQLValueFunctionOp.SVFOP_CURRENT_ROLE,
}


@dataclass(frozen=True)
class _Pinning:
    column: str
    settings: frozenset[str]
    is_helper: Callable[[str | None, str], bool]
    distrust: frozenset[tuple[str | None, str]]  # sub-selects reading these decide nothing

    def context(self, node: Any) -> bool:
        """Does *node* compute the bound context: current_setting(<tenant/user setting>),
        a user helper function, or a sub-select over those / the session user; and no
        column of the row itself (outside sub-selects)?"""
        if isinstance(node, ast.SubLink):
            return self.trusted(node) and any(self.source(n) for n in iter_nodes(node.subselect))
        outer = list(iter_nodes(node, into_sublinks=False))
        if any(isinstance(n, ast.ColumnRef) for n in outer):
            return False
        subs = [n for n in iter_nodes(node) if isinstance(n, ast.SubLink)]
        return all(self.trusted(n) for n in subs) and any(self.source(n) for n in iter_nodes(node))

    def trusted(self, sublink: ast.SubLink) -> bool:
        return not any(r in self.distrust for r in relations_in(sublink.subselect))

    def source(self, node: ast.Node) -> bool:
        if isinstance(node, ast.FuncCall):
            schema, name = _call_name(node)
            if name == "current_setting" and schema in (None, "pg_catalog"):
                first = _literal_text(node.args[0]) if node.args else None
                return first is not None and first in self.settings
            return self.is_helper(schema, name)
        if isinstance(node, ast.RangeVar):
            return (node.schemaname, node.relname) in SCOPE_VIEWS
        return isinstance(node, ast.SQLValueFunction) and node.op in _IDENTITY_FUNCS

    def correlated(self, sublink: ast.SubLink) -> bool:
        """EXISTS (SELECT ... WHERE x.<column> = <outer>.<column> AND <context>)."""
        where = getattr(sublink.subselect, "whereClause", None)
        joins = any(
            isinstance(n, ast.A_Expr)
            and n.kind == enums.A_Expr_Kind.AEXPR_OP
            and getattr((n.name or (None,))[-1], "sval", None) == "="
            and _column_name(n.lexpr) == self.column
            and _column_name(n.rexpr) == self.column
            for n in iter_nodes(where)
        )
        return joins and self.trusted(sublink) and any(self.source(n) for n in iter_nodes(where))

    def pinned(self, node: Any) -> bool:
        if isinstance(node, ast.BoolExpr):
            args = list(node.args or ())
            if node.boolop == enums.BoolExprType.AND_EXPR:
                return any(self.pinned(a) for a in args)
            if node.boolop == enums.BoolExprType.OR_EXPR:
                return bool(args) and all(self.pinned(a) for a in args)
            return False
        if isinstance(node, ast.A_Expr):
            op = getattr((node.name or (None,))[-1], "sval", None)
            if op != "=":
                return False
            if node.kind == enums.A_Expr_Kind.AEXPR_OP:
                if _column_name(node.lexpr) == self.column:
                    return self.context(node.rexpr)
                if _column_name(node.rexpr) == self.column:
                    return self.context(node.lexpr)
                return False
            if node.kind == enums.A_Expr_Kind.AEXPR_OP_ANY:
                return _column_name(node.lexpr) == self.column and self.context(node.rexpr)
            if node.kind == enums.A_Expr_Kind.AEXPR_IN and _column_name(node.lexpr) == self.column:
                items = node.rexpr if isinstance(node.rexpr, tuple | list) else (node.rexpr,)
                return bool(items) and all(self.context(i) for i in items)
            return False
        if isinstance(node, ast.SubLink):
            if node.subLinkType == enums.SubLinkType.ANY_SUBLINK:
                return _column_name(node.testexpr) == self.column and self.context(node)
            if node.subLinkType == enums.SubLinkType.EXISTS_SUBLINK:
                return self.correlated(node)
        return False


def is_pinned(
    node: Any,
    column: str,
    settings: frozenset[str],
    is_helper: Callable[[str | None, str], bool],
    distrust: frozenset[tuple[str | None, str]] = frozenset(),
) -> bool:
    """Is the boolean expression *node* true only for rows of the bound tenant?

    AND: one pinned conjunct suffices; OR: every branch must be pinned. Pinned:
    ``column = <context>`` (either side, casts allowed), ``column IN (SELECT ...)`` /
    ``= ANY (...)`` over the context, and ``EXISTS (SELECT ... WHERE m.column =
    t.column AND <context>)``; the context is the tenant or user setting
    (*settings*), a user helper function or the session user. Anything else
    (``IS NOT NULL``, ``= other_column``, constant lists, a bare flag) is not.
    Sub-selects reading a table in *distrust* (schema or None, name) pin nothing.
    """
    return _Pinning(column, settings, is_helper, distrust).pinned(node)


def view_filters_tenant(
    query: Any,
    tenant_key: Callable[[str | None, str], str | None],
    pinned: Callable[[ast.Node, str], bool],
) -> bool:
    """Does the view body *query* keep to the bound tenant on its own? One plain SELECT
    (no set operation, no WITH) over exactly one relation, a tenant table, with a WHERE
    that pins that table's tenant column, and no other tenant table read anywhere (sub-
    selects included). *tenant_key*: (schema or None, name) -> that table's tenant
    column, None for a table that is not a tenant table; *pinned*: is a node pinned on a
    column. Only worth anything with ``security_barrier``: without it the planner may run
    a caller's (leaky) function on rows before the view's WHERE drops them."""
    if not isinstance(query, ast.SelectStmt) or query.withClause is not None:
        return False
    if query.op != enums.SetOperation.SETOP_NONE or len(query.fromClause or ()) != 1:
        return False
    (source,) = query.fromClause or (None,)
    if not isinstance(source, ast.RangeVar) or not source.relname:
        return False
    column = tenant_key(source.schemaname, source.relname)
    others = [r for r in relations_in(query) if r != (source.schemaname, source.relname)]
    if column is None or any(tenant_key(*r) is not None for r in others):
        return False
    return query.whereClause is not None and pinned(query.whereClause, column)


# --- function bodies --------------------------------------------------------------------


@dataclass
class Function:
    """A user function and what its body does, parsed on demand."""

    oid: int
    signature: str  # regprocedure text, already quoted by the server
    language: str
    source: str | None
    definition: str | None  # pg_get_functiondef (sql / plpgsql only)
    owner: str
    owner_bypasses: bool  # owner is superuser or BYPASSRLS
    security_definer: bool
    config: list[str]
    executable: bool  # by the runtime role
    schema: str
    name: str
    identity_args: str

    @property
    def ident(self) -> sql.Composed:
        """schema.name(args) for SQL (ALTER / REVOKE ... FUNCTION), identifiers quoted."""
        return sql.SQL("{}.{}({})").format(
            sql.Identifier(self.schema),
            sql.Identifier(self.name),
            sql.SQL(self.identity_args),  # type: ignore[arg-type,unused-ignore]  # server-rendered
        )

    @property
    def search_path(self) -> list[str] | None:
        """The pinned search_path (SET search_path = ...), or None."""
        for item in self.config:
            key, _, value = item.partition("=")
            if key == "search_path":
                return [
                    p.strip().strip('"')
                    for p in value.split(",")
                    if p.strip() not in ("", "pg_temp")
                ]
        return None

    @property
    def bound_body(self) -> bool:
        """A LANGUAGE sql BEGIN ATOMIC body: bound at creation, deparsed by the server
        relative to the *audit session's* search_path."""
        return self.language == "sql" and not (self.source and self.source.strip())

    def lookup_path(self, session_schemas: list[str]) -> list[str] | None:
        """Where an unqualified table name in the parsed body resolves (None: unknown)."""
        return session_schemas if self.bound_body else self.search_path

    @cached_property
    def dynamic_sql(self) -> bool:
        """A PL/pgSQL body that runs SQL built at run time (EXECUTE, FOR ... IN EXECUTE,
        OPEN ... FOR EXECUTE, RETURN QUERY EXECUTE): what it reads cannot be known."""
        if self.language != "plpgsql" or not self.definition:
            return False
        try:
            tree = parse_plpgsql(self.definition)
        except ParseError:
            return False  # not analysable anyway: statements is None
        stack: list[Any] = [tree]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                if "PLpgSQL_stmt_dynexecute" in item or "PLpgSQL_stmt_dynfors" in item:
                    return True
                if "dynquery" in item:
                    return True
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return False

    @property
    def unanalysable(self) -> str | None:
        """Why the body cannot be analysed (None: it can)."""
        if self.language not in ("sql", "plpgsql"):
            return f"it is LANGUAGE {self.language}, which the audit cannot read"
        if self.statements is None:
            return "its body does not parse"
        if self.dynamic_sql:
            return "it runs dynamic SQL (EXECUTE)"
        return None

    @cached_property
    def statements(self) -> list[ast.Node] | None:
        """The parsed SQL statements of the body; None when the body cannot be analysed
        (another language, or a parse error)."""
        try:
            if self.language == "sql":
                if self.source and self.source.strip():
                    return _statements(self.source)
                if self.definition:  # BEGIN ATOMIC: the body is in the definition
                    return _statements(self.definition)
                return []
            if self.language == "plpgsql" and self.definition:
                return _plpgsql_statements(parse_plpgsql(self.definition))
        except ParseError:
            return None
        return None


def _statements(text: str) -> list[ast.Node]:
    return [s.stmt for s in parse_sql(text) if s.stmt is not None]


def _plpgsql_statements(tree: Any) -> list[ast.Node] | None:
    """Parse every embedded SQL expression of a PL/pgSQL function tree (pglast JSON)."""
    queries: list[str] = []
    stack: list[Any] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            q = item.get("query")
            if isinstance(q, str):
                queries.append(q)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    out: list[ast.Node] = []
    for q in queries:
        candidates = [q, f"SELECT {q}"]
        if ":=" in q:  # an assignment: target := expression
            candidates.append("SELECT " + q.split(":=", 1)[1])
        for text in candidates:
            try:
                out.extend(_statements(text))
                break
            except ParseError:
                continue
        else:
            return None
    return out


def setting_changes(stmts: list[ast.Node], setting: str) -> list[str]:
    """How *stmts* change *setting*: 'SET', 'SET LOCAL', 'set_config(..., false)' ..."""
    found: list[str] = []
    for n in iter_nodes(stmts):
        if (
            isinstance(n, ast.VariableSetStmt)
            and n.name == setting
            and n.kind
            in (enums.VariableSetKind.VAR_SET_VALUE, enums.VariableSetKind.VAR_SET_CURRENT)
        ):
            found.append("SET LOCAL" if n.is_local else "SET")
        elif isinstance(n, ast.FuncCall):
            schema, name = _call_name(n)
            args = list(n.args or ())
            if (
                name == "set_config"
                and schema in (None, "pg_catalog")
                and len(args) == 3
                and _literal_text(args[0]) == setting
            ):
                local = args[2]
                if isinstance(local, ast.A_Const) and isinstance(local.val, ast.Boolean):
                    found.append(f"set_config(..., {str(local.val.boolval).lower()})")
                else:
                    found.append("set_config(...)")
    return found
