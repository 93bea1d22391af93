"""The catalog model audit, probe and the pytest plugin share: read-only queries, loaded once.

Works on databases tenantguard did not create: tenant tables are found by their tenant
column (or a mapping, or inferred from foreign keys), the tenant setting is inferred from
the policies when not given. :func:`load_context` gives the tables, their policies and the
runtime role's privileges (:class:`AuditContext`, which the audit rules read); the user
functions are loaded on demand (:class:`Function`); :func:`load_meta` adds what the probe
needs to build rows and aim at another tenant's (:class:`TableMeta`). What the SQL in all
that means (policy expressions, view and function bodies) is
:mod:`tenantguard.tooling.sqlanalysis`'s business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import psycopg
from pglast import ast
from psycopg import sql

from tenantguard.core.names import QualifiedName
from tenantguard.core.rolecheck import ROLE_CHECK_QUERY, role_params
from tenantguard.core.sqlbuild import ProtectSpec, protect_statements, render
from tenantguard.tooling._runas import RuntimeAccess
from tenantguard.tooling.sqlanalysis import (
    call_name,
    func_names,
    function_statements,
    is_pinned,
    literal_text,
    mentions_column,
    parse_expr,
    plpgsql_runs_dynamic_sql,
    settings_read,
    walk,
)

__all__ = [
    "FK_COLUMNS",
    "FUNCTION_EXCLUDED_SCHEMAS",
    "SYSTEM_SCHEMAS",
    "AuditContext",
    "BaseTable",
    "Column",
    "ExposingView",
    "ForeignKey",
    "Function",
    "FunctionOver",
    "Policy",
    "Reference",
    "Table",
    "TableMeta",
    "UniqueKey",
    "View",
    "infer_setting",
    "infer_tenant_columns",
    "infer_user_setting",
    "load_context",
    "load_exposing_views",
    "load_meta",
    "load_policies",
    "protect_fix_sql",
    "replace_foreign_key_sql",
    "role_defaults",
    "settings_in_use",
    "sql_comment",
    "tenantguard_setting",
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
            if (
                not p.permissive
                and p.command == "ALL"
                and mentions_column(p.qual, self.tenant_column)
            ):
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


_FK_ACTIONS = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def replace_foreign_key_sql(
    conn: Any,
    child: sql.Identifier,
    name: str,
    columns: list[tuple[str, str]],
    target: sql.Identifier,
    actions: tuple[str, str],
) -> str:
    """Replace foreign key *name* of *child* by one over *columns* (child, target pairs, the
    tenant keys first), keeping its ON UPDATE / ON DELETE actions, on a unique key of the
    target over the same columns (added: a foreign key needs one)."""
    q = ", ".join
    mine = q(sql.Identifier(c).as_string(conn) for c, _ in columns)
    theirs = q(sql.Identifier(p).as_string(conn) for _, p in columns)
    tail = "".join(
        f" ON {what} {_FK_ACTIONS[code]}"
        for what, code in zip(("UPDATE", "DELETE"), actions, strict=True)
        if code in _FK_ACTIONS
    )
    child_sql, target_sql = child.as_string(conn), target.as_string(conn)
    fk = sql.Identifier(name).as_string(conn)
    return "\n".join(
        [
            f"-- replace {name} with a key that includes the tenant (same actions):",
            f"ALTER TABLE {target_sql} ADD UNIQUE ({theirs});",
            f"ALTER TABLE {child_sql} DROP CONSTRAINT {fk};",
            f"ALTER TABLE {child_sql} ADD CONSTRAINT {fk} FOREIGN KEY ({mine}) "
            f"REFERENCES {target_sql} ({theirs}){tail};",
        ]
    )


def sql_comment(text: str) -> str:
    """*text* as SQL ``--`` comment lines: every line gets its own ``--``, so a catalog
    name with a newline in it cannot end the comment and turn into SQL."""
    return "\n".join("-- " + line for line in (text.splitlines() or [""]))


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


# Views and materialized views over tenant tables that run as their owner (no
# security_invoker): TGA140 and TGA141.
_TENANT_VIEWS = """
SELECT DISTINCT v.oid::regclass::text, pg_catalog.pg_get_userbyid(v.relowner)::text,
       o.rolsuper OR o.rolbypassrls
       -- or it owns (or is a member of the owner of) a tenant table it reads that does
       -- not FORCE row level security: the view reads that table's every row
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d2
                  JOIN pg_catalog.pg_class t ON t.oid = d2.refobjid
                  WHERE d2.objid = r.oid AND d2.classid = 'pg_rewrite'::regclass
                    AND t.oid = ANY(%(oids)s) AND t.oid <> v.oid
                    AND NOT (t.relrowsecurity AND t.relforcerowsecurity)
                    AND pg_catalog.pg_has_role(v.relowner, t.relowner, 'USAGE')),
       v.relkind::text,
       pg_catalog.has_table_privilege(%(role)s, v.oid, 'SELECT'), vn.nspname::text, v.relname::text,
       coalesce(v.reloptions && ARRAY['security_barrier=true', 'security_barrier=on'], false),
       pg_catalog.pg_get_viewdef(v.oid)
FROM pg_catalog.pg_rewrite r
JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
JOIN pg_catalog.pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
JOIN pg_catalog.pg_roles o ON o.oid = v.relowner
WHERE v.relkind IN ('v', 'm') AND d.refobjid = ANY(%(oids)s) AND d.refobjid <> v.oid
  AND NOT coalesce('security_invoker=true' = ANY(v.reloptions), false)
  AND NOT coalesce('security_invoker=on' = ANY(v.reloptions), false)
ORDER BY 1
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

    @cached_property
    def tenant_views(self) -> list[tuple[Any, ...]]:
        """Views and materialized views over tenant tables without security_invoker:
        (regclass text, owner, RLS does not apply to the owner on a table the view reads
        (superuser, BYPASSRLS, or owner of a table that does not FORCE it), relkind, readable by the runtime role,
        schema, name, security_barrier, pg_get_viewdef)."""
        return self.fetch(_TENANT_VIEWS, {"role": self.runtime_role, "oids": self.tenant_oids})

    def definer_bypass(self, f: Function, t: Table) -> str | None:
        """Why RLS does not apply to *f*'s owner on *t* (None: it applies)."""
        if f.owner_bypasses:
            return f"owner {f.owner!r} is superuser or BYPASSRLS"
        if t.forced:
            return None
        row = self.conn.execute(
            "SELECT pg_catalog.pg_has_role(%s, %s, 'USAGE')", (f.owner, t.owner)
        ).fetchone()
        if row and row[0]:
            return (
                f"owner {f.owner!r} owns it (or is a member of {t.owner!r}) and RLS is not forced"
            )
        return None

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


def tenantguard_setting(conn: psycopg.Connection[Any], helper: str) -> str | None:
    """What tenantguard's ``tenantguard.<helper>()`` (tenant_setting, user_setting) names,
    when it is installed."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = 'tenantguard' AND p.proname = %s)",
        (helper,),
    ).fetchone()
    if not (row and row[0]):
        return None
    got = conn.execute(
        sql.SQL("SELECT {}.{}()").format(sql.Identifier("tenantguard"), sql.Identifier(helper))
    ).fetchone()
    return str(got[0]) if got and got[0] else None


def infer_setting(conn: psycopg.Connection[Any], policies: list[Policy]) -> str:
    """The tenant setting: from tenantguard's helper if installed, else from the policies."""
    installed = tenantguard_setting(conn, "tenant_setting")
    if installed:
        return installed
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
            for n in walk(fn.statements):
                if isinstance(n, ast.FuncCall) and call_name(n)[1] == "current_setting":
                    text = literal_text(n.args[0]) if n.args else None
                    if text:
                        out.add(text)
    if called & {"current_tenant", "current_user_id"}:
        for helper in ("tenant_setting", "user_setting"):
            got = tenantguard_setting(conn, helper)
            if got:
                out.add(got)
    return out


def infer_user_setting(conn: psycopg.Connection[Any]) -> str:
    """The user setting: tenantguard's (``tenantguard.user_setting()``) if installed."""
    return tenantguard_setting(conn, "user_setting") or "app.user_id"


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


def load_policies(conn: psycopg.Connection[Any], oids: list[int]) -> list[tuple[int, Policy]]:
    """(table oid, policy) for every policy on the tables *oids*."""
    return [
        (relid, Policy(name, permissive, cmd, list(roles), qual, check))
        for relid, name, permissive, cmd, roles, qual, check in conn.execute(
            _POLICIES, {"oids": oids}
        ).fetchall()
    ]


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
    for relid, pol in load_policies(conn, oids):
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
        return plpgsql_runs_dynamic_sql(self.definition)

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
        return function_statements(self.language, self.source, self.definition)


# --- what the probe needs beyond that: columns, keys, references, views, functions -----


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): usable in a cast
    category: str  # pg_type.typcategory
    not_null: bool
    has_default: bool
    identity: str  # '', 'a' (ALWAYS), 'd' (BY DEFAULT)
    generated: bool
    sequence_default: bool  # a default that calls nextval() (serial, 'INV-' || nextval(..))
    enum_first: str | None  # first label of an enum type
    max_length: int | None  # varchar(n) / char(n)


@dataclass(frozen=True)
class UniqueKey:
    name: str  # index name
    columns: tuple[str, ...]  # empty for an expression index
    primary: bool
    plain: bool = True  # False: an expression or partial index (not aimed at generically)


@dataclass(frozen=True)
class ForeignKey:
    name: str
    child_oid: int
    child_columns: tuple[str, ...]
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class Reference:
    """A foreign key out of a tenant table, to any table."""

    name: str
    child_columns: tuple[str, ...]
    parent: QualifiedName
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class FunctionOver:
    signature: str  # regprocedure text, e.g. app.get_invoice(bigint)
    schema: str
    name: str
    arg_types: tuple[str, ...]
    returns_set: bool
    volatile: bool


@dataclass(frozen=True)
class View:
    name: QualifiedName
    kind: str  # 'v' view, 'm' materialized view
    has_tenant_column: bool
    security_invoker: bool


@dataclass
class TableMeta:
    oid: int
    name: QualifiedName
    columns: list[Column]
    unique_keys: list[UniqueKey]
    referenced_by: list[ForeignKey] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    functions: list[FunctionOver] = field(default_factory=list)

    @property
    def primary_key(self) -> tuple[str, ...]:
        for k in self.unique_keys:
            if k.primary and k.plain:
                return k.columns
        return ()

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def unique_columns(self) -> set[str]:
        return {c for k in self.unique_keys for c in k.columns}


_COLUMNS = """
SELECT a.attrelid::int, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
       t.typcategory::text, a.attnotnull, a.atthasdef, a.attidentity::text,
       a.attgenerated <> '',
       EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep
               JOIN pg_catalog.pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S'
               WHERE dep.classid = 'pg_catalog.pg_attrdef'::regclass AND dep.objid = d.oid),
       (SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid
        ORDER BY e.enumsortorder LIMIT 1),
       CASE WHEN a.atttypid IN ('varchar'::regtype, 'bpchar'::regtype) AND a.atttypmod > 4
            THEN a.atttypmod - 4 END
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
# Unique indexes; expression and partial ones are listed too (reported as not aimed at).
_UNIQUE = """
SELECT i.indrelid::int, c.relname::text, i.indisprimary,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.n),
       i.indexprs IS NULL AND i.indpred IS NULL AND NOT (0 = ANY(i.indkey))
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indisunique AND i.indrelid = ANY(%(oids)s)
ORDER BY i.indisprimary DESC, c.relname
"""
# A foreign key's (con) columns and the columns they reference, in key order: two arrays.
FK_COLUMNS = """
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.n),
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.n)
"""
# Foreign keys out of tenant tables, to any table; those that point at a tenant table
# are that table's referenced_by too.
_REFERENCES = (
    """
SELECT con.conname::text, con.conrelid::int, con.confrelid::int, pn.nspname::text,
       pc.relname::text,"""
    + FK_COLUMNS
    + """FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class pc ON pc.oid = con.confrelid
JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
WHERE con.contype = 'f' AND con.conrelid = ANY(%(oids)s) AND con.conparentid = 0
"""
)
# Views and materialized views that read the table, directly or through other views,
# selectable by the role; with their security_invoker option.
_VIEWS_OVER = """
WITH RECURSIVE over(base, view) AS (
    SELECT d.refobjid, r.ev_class
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_catalog.pg_rewrite'::regclass
    WHERE d.refobjid = ANY(%(oids)s) AND r.ev_class <> d.refobjid
  UNION
    SELECT o.base, r.ev_class
    FROM over o
    JOIN pg_catalog.pg_depend d ON d.refobjid = o.view
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_catalog.pg_rewrite'::regclass
    WHERE r.ev_class <> o.view
)
SELECT DISTINCT o.base::int, n.nspname::text, v.relname::text, v.relkind::text,
       EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = v.oid AND a.attname = %(col)s AND NOT a.attisdropped),
       coalesce('security_invoker=true' = ANY(v.reloptions)
                OR 'security_invoker=on' = ANY(v.reloptions), false)
FROM over o
JOIN pg_catalog.pg_class v ON v.oid = o.view
JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
WHERE v.relkind IN ('v', 'm') AND pg_catalog.has_table_privilege(%(role)s, v.oid, 'SELECT')
ORDER BY 2, 3
"""
# SECURITY DEFINER functions the runtime role may call that read the table: named in the
# body, or recorded as a dependency (BEGIN ATOMIC bodies have no prosrc). Candidates only:
# the probe calls them to see what they return.
_DEFINER_FUNCTIONS_OVER = """
SELECT p.oid::regprocedure::text, n.nspname::text, p.proname::text,
       ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM unnest(p.proargtypes) t),
       p.proretset, p.provolatile::text, p.prosrc,
       ARRAY(SELECT d.refobjid::int FROM pg_catalog.pg_depend d
             WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
               AND d.refclassid = 'pg_catalog.pg_class'::regclass)
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef AND p.prokind = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND pg_catalog.has_function_privilege(%(role)s, p.oid, 'EXECUTE')
  AND p.prorettype <> 'pg_catalog.trigger'::regtype
  -- install --signed's error path: reads only the key table, and only ever raises
  AND NOT (n.nspname = 'tenantguard_keys' AND p.proname = '_fail_signed')
"""
_ROLE_DEFAULTS = """
SELECT s.setconfig
FROM pg_catalog.pg_db_role_setting s
WHERE (s.setrole = 0 OR s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(role)s))
  AND (s.setdatabase = 0 OR s.setdatabase =
       (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
ORDER BY (s.setrole <> 0) ASC, (s.setdatabase <> 0) ASC  -- most specific last: it wins
"""


def role_defaults(conn: psycopg.Connection[Any], role: str) -> list[tuple[str, str]]:
    """The custom settings the runtime role gets at login (role, database, both)."""
    out: dict[str, str] = {}
    for (config,) in conn.execute(_ROLE_DEFAULTS, {"role": role}).fetchall():
        for item in config or ():
            name, _, value = item.partition("=")
            if "." in name:
                out[name] = value
    return list(out.items())


# Views the runtime role can read that reach tenant rows some other way than through the
# tables' own policies: views (and views under them) over tables with the tenant column, in
# any schema, and views whose body calls a SECURITY DEFINER function. One row per (view,
# tenant table it reads), a view that reads none on one row with NULLs. The probe attacks
# the views its table pass did not (TGP119).
_EXPOSING_VIEWS = """
WITH RECURSIVE under(view, rel) AS (
    SELECT r.ev_class, d.refobjid
    FROM pg_catalog.pg_rewrite r
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
         AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
    WHERE d.refobjid <> r.ev_class
  UNION
    SELECT u.view, d.refobjid
    FROM under u
    JOIN pg_catalog.pg_rewrite r ON r.ev_class = u.rel
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
         AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
    WHERE d.refobjid <> r.ev_class
),
keys(oid, col) AS (SELECT * FROM unnest(%(map_oids)s::oid[], %(map_cols)s::text[])),
bases AS (
    SELECT DISTINCT u.view, c.oid, a.attname::text AS col
    FROM under u
    JOIN pg_catalog.pg_class c ON c.oid = u.rel AND c.relkind IN ('r', 'p', 'f')
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         AND a.attname = coalesce((SELECT k.col FROM keys k WHERE k.oid = c.oid), %(col)s)
),
definers AS (
    SELECT DISTINCT x.view, p.oid, p.provolatile = 'v' AS volatile
    FROM (SELECT r.ev_class AS view, r.oid AS rule FROM pg_catalog.pg_rewrite r
          UNION SELECT u.view, r.oid FROM under u JOIN pg_catalog.pg_rewrite r ON r.ev_class = u.rel) x
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
         AND d.objid = x.rule AND d.refclassid = 'pg_catalog.pg_proc'::regclass
    JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid AND p.prosecdef
)
SELECT v.oid::int, n.nspname::text, v.relname::text, v.relkind::text,
       pg_catalog.pg_get_userbyid(v.relowner)::text, o.rolsuper OR o.rolbypassrls,
       coalesce('security_invoker=true' = ANY(v.reloptions)
                OR 'security_invoker=on' = ANY(v.reloptions), false),
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND (a.attname = %(col)s OR a.attname IN (SELECT col FROM bases WHERE view = v.oid))
             ORDER BY a.attname <> %(col)s, a.attnum),
       ARRAY(SELECT f.oid::regprocedure::text FROM definers f WHERE f.view = v.oid ORDER BY 1),
       ARRAY(SELECT pg_catalog.pg_get_userbyid(p.proowner)::text
             FROM definers f JOIN pg_catalog.pg_proc p ON p.oid = f.oid
             WHERE f.view = v.oid ORDER BY f.oid::regprocedure::text),
       ARRAY(SELECT f.oid::regprocedure::text FROM definers f
             WHERE f.view = v.oid AND f.volatile ORDER BY 1),
       ARRAY(SELECT DISTINCT u.rel::int FROM under u WHERE u.view = v.oid),
       b.oid::int, bn.nspname::text, bc.relname::text, b.col,
       pg_catalog.format_type(ba.atttypid, ba.atttypmod), bc.relrowsecurity,
       bc.relforcerowsecurity, bc.relowner = v.relowner,
       pg_catalog.has_table_privilege(%(role)s, bc.oid, 'SELECT')
           AND pg_catalog.has_schema_privilege(%(role)s, bc.relnamespace, 'USAGE'),
       pg_catalog.has_schema_privilege(%(role)s, bc.relnamespace, 'USAGE'),
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_index i
             JOIN unnest(i.indkey) WITH ORDINALITY k(attnum, ord) ON true
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = bc.oid AND i.indisprimary ORDER BY k.ord)
FROM pg_catalog.pg_class v
JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
JOIN pg_catalog.pg_roles o ON o.oid = v.relowner
LEFT JOIN bases b ON b.view = v.oid
LEFT JOIN pg_catalog.pg_class bc ON bc.oid = b.oid
LEFT JOIN pg_catalog.pg_namespace bn ON bn.oid = bc.relnamespace
LEFT JOIN pg_catalog.pg_attribute ba ON ba.attrelid = b.oid AND ba.attname = b.col
WHERE v.relkind IN ('v', 'm') AND NOT (n.nspname = ANY(%(system)s))
  AND pg_catalog.has_table_privilege(%(role)s, v.oid, 'SELECT')
  AND pg_catalog.has_schema_privilege(%(role)s, v.relnamespace, 'USAGE')
  AND (b.oid IS NOT NULL OR EXISTS (SELECT 1 FROM definers f WHERE f.view = v.oid))
ORDER BY 2, 3, bn.nspname, bc.relname
"""


@dataclass(frozen=True)
class BaseTable:
    """A tenant table an :class:`ExposingView` reads (directly or through other views)."""

    oid: int
    name: QualifiedName
    tenant_column: str
    tenant_type: str
    rls: bool
    forced: bool
    owned_by_view_owner: bool
    readable: bool  # the runtime role may SELECT it itself
    schema_usage: bool
    primary_key: tuple[str, ...]

    def protect_sql(self) -> str:
        return protect_fix_sql(self.name, self.tenant_column, self.tenant_type, self.primary_key)


@dataclass(frozen=True)
class ExposingView:
    """A view or materialized view the runtime role can read over tenant rows: over tables
    with the tenant column (any schema), or calling SECURITY DEFINER functions."""

    oid: int
    name: QualifiedName
    kind: str  # 'v' view, 'm' materialized view
    owner: str
    owner_bypasses: bool  # superuser or BYPASSRLS
    security_invoker: bool
    tenant_columns: tuple[str, ...]  # its columns named like a base table's tenant column
    definers: tuple[tuple[str, str], ...]  # (signature, owner) of SECURITY DEFINER functions
    volatile_definers: tuple[str, ...]  # the signatures of those that are VOLATILE
    reads: tuple[int, ...]  # every relation under it (views and tables)
    bases: tuple[BaseTable, ...]


def load_exposing_views(
    conn: psycopg.Connection[Any],
    *,
    role: str,
    tenant_column: str,
    tenant_columns: Mapping[int, str],
) -> list[ExposingView]:
    """The views :data:`_EXPOSING_VIEWS` finds; *tenant_columns* maps table oids to their
    key where it is not *tenant_column*."""
    params = {
        "role": role,
        "col": tenant_column,
        "map_oids": list(tenant_columns),
        "map_cols": list(tenant_columns.values()),
        "system": list(FUNCTION_EXCLUDED_SCHEMAS),
    }
    views: dict[int, ExposingView] = {}
    for row in conn.execute(_EXPOSING_VIEWS, params).fetchall():
        oid, schema, name, kind, owner, bypass, invoker, cols, sigs, owners, volatile, reads = row[
            :12
        ]
        base = None
        if row[12] is not None:
            col, type_name, rls, forced, same_owner, readable, usage = row[15:22]
            base = BaseTable(
                row[12],
                QualifiedName(row[13], row[14]),
                col,
                type_name,
                rls,
                forced,
                same_owner,
                readable,
                usage,
                tuple(row[22]),
            )
        known = views.get(oid)
        if known is None:
            known = ExposingView(
                oid,
                QualifiedName(schema, name),
                kind,
                owner,
                bool(bypass),
                bool(invoker),
                tuple(cols),
                tuple(zip(sigs, owners, strict=True)),
                tuple(volatile),
                tuple(reads),
                (),
            )
        if base is not None:
            known = replace(known, bases=(*known.bases, base))
        views[oid] = known
    return list(views.values())


def load_meta(
    conn: psycopg.Connection[Any],
    oids: list[int],
    names: dict[int, QualifiedName],
    *,
    role: str,
    tenant_column: str,
) -> dict[int, TableMeta]:
    metas = {oid: TableMeta(oid, names[oid], [], []) for oid in oids}
    for row in conn.execute(_COLUMNS, {"oids": oids}).fetchall():
        metas[row[0]].columns.append(Column(*row[1:]))
    for relid, index, primary, cols, plain in conn.execute(_UNIQUE, {"oids": oids}).fetchall():
        metas[relid].unique_keys.append(UniqueKey(index, tuple(cols), primary, plain))
    for name, child, parent, schema, table, ccols, pcols in conn.execute(
        _REFERENCES, {"oids": oids}
    ).fetchall():
        ref = Reference(name, tuple(ccols), QualifiedName(schema, table), tuple(pcols))
        metas[child].references.append(ref)
        if parent in metas:
            fk = ForeignKey(name, child, tuple(ccols), tuple(pcols))
            metas[parent].referenced_by.append(fk)
    for relid, schema, view, kind, has_col, invoker in conn.execute(
        _VIEWS_OVER, {"oids": oids, "role": role, "col": tenant_column}
    ).fetchall():
        metas[relid].views.append(View(QualifiedName(schema, view), kind, has_col, invoker))
    funcs = conn.execute(_DEFINER_FUNCTIONS_OVER, {"role": role}).fetchall()
    for m in metas.values():
        for sig, schema, fname, args, retset, volatility, src, deps in funcs:
            if m.oid in deps or m.name.name in (src or ""):
                fn = FunctionOver(sig, schema, fname, tuple(args), retset, volatility == "v")
                m.functions.append(fn)
    return metas
