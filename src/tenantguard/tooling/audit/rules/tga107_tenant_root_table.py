"""TGA107 tenant-root-table: the table of tenants (keyed by its own id, referenced by the
tenant column) is open to the runtime role: list, rename or delete other tenants."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from psycopg import sql

from tenantguard.core.names import QualifiedName
from tenantguard.core.sqlbuild import ProtectSpec, protect_statements, render
from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext, Policy, load_policies, sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA107",
    name="tenant-root-table",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="The tenant root table is not pinned to the bound tenant",
    description="The table the tenant column references (tenants.id) has no tenant column, "
    "so it is easy to leave out, but it is a tenant table keyed by its own id. Without row "
    "level security pinning that id to the bound tenant, the runtime role lists every "
    "tenant, and with UPDATE or DELETE it renames or deletes another tenant's row; "
    "referential actions (ON UPDATE / ON DELETE CASCADE, SET NULL, SET DEFAULT) then carry "
    "that into every tenant table, run by the system with no row level security: a "
    "rename takes the other tenant's rows over, a delete wipes them.",
    anti_pattern="CREATE TABLE app.tenants (id bigint PRIMARY KEY, name text);\n"
    "CREATE TABLE app.invoices (tenant_id bigint REFERENCES app.tenants ON UPDATE CASCADE "
    "ON DELETE CASCADE, ...);\nGRANT SELECT, UPDATE, DELETE ON app.tenants TO app_user;",
    best_practice="tenantguard protect app.tenants --tenant-column id  -- pinned to its own id\n"
    "REVOKE UPDATE, DELETE ON app.tenants FROM app_user;  -- tenants change through an admin",
)

_ROOTS = """
SELECT r.oid::int, n.nspname::text, r.relname::text, a.attname::text,
       pg_catalog.format_type(a.atttypid, a.atttypmod), r.relrowsecurity, r.relforcerowsecurity,
       pg_catalog.pg_has_role(%(role)s, r.relowner, 'USAGE'),
       ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p
             WHERE pg_catalog.has_table_privilege(%(role)s, r.oid, p)
                OR (p <> 'DELETE' AND pg_catalog.has_any_column_privilege(%(role)s, r.oid, p))),
       ARRAY_AGG(DISTINCT quote_ident(cn.nspname) || '.' || quote_ident(c.relname)
                 || ' ' || con.confupdtype::text || con.confdeltype::text)
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_catalog.pg_class r ON r.oid = con.confrelid
JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum = con.confkey[1]
WHERE con.contype = 'f' AND con.conrelid = ANY(%(oids)s) AND NOT (con.confrelid = ANY(%(oids)s))
  AND cardinality(con.conkey) = 1
  AND con.conkey[1] = (SELECT attnum FROM pg_catalog.pg_attribute
                       WHERE attrelid = con.conrelid AND attname = %(col)s)
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
ORDER BY 2, 3
"""
_ACTIONS = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def _open_commands(ctx: AuditContext, oid: int, key: str, rls: bool, exempt: bool) -> list[str]:
    """The commands through which the runtime role reaches root rows other than its own."""
    commands = ["SELECT", "INSERT", "UPDATE", "DELETE"]
    if not rls or exempt:
        return commands
    policies = [p for _relid, p in load_policies(ctx.conn, [oid])]
    policies = [p for p in policies if ctx.applies(p)]

    def pinned(p: Policy, command: str) -> bool:
        expr = p.effective_check if command == "INSERT" else p.qual
        return ctx.pinned(expr, key)

    open_: list[str] = []
    for command in commands:
        guard = any(not p.permissive and p.covers(command) and pinned(p, command) for p in policies)
        permissive = [p for p in policies if p.permissive and p.covers(command)]
        if permissive and not guard and not all(pinned(p, command) for p in permissive):
            open_.append(command)
    return open_


def _cascades(edges: list[str]) -> list[str]:
    out: list[str] = []
    for edge in edges:
        table, codes = edge.rsplit(" ", 1)
        for when, code in (("UPDATE", codes[0]), ("DELETE", codes[1])):
            if code in _ACTIONS:
                out.append(f"ON {when} {_ACTIONS[code]} from {table}")
    return out


def _fix(ctx: AuditContext, r: tuple[Any, ...]) -> str:
    name = QualifiedName(r[1], r[2])
    try:
        spec = ProtectSpec(name, r[3], r[4], (r[3],))
        protect = "\n".join(render(s) + ";" for s in protect_statements(spec))
    except Exception:  # a key type tenantguard cannot pin: say what to do instead
        protect = sql_comment(f"pin {r[3]} to the bound tenant in a policy on {name}")
    revoke = sql.SQL("REVOKE INSERT, UPDATE, DELETE ON {} FROM {};").format(
        name.ident, sql.Identifier(ctx.runtime_role)
    )
    return (
        sql_comment(f"needs tenantguard install; pins {name}.{r[3]} to the bound tenant")
        + "\n"
        + protect
        + "\n"
        + revoke.as_string(ctx.conn)
    )


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    if not ctx.tenant_oids:
        return
    rows = ctx.fetch(
        _ROOTS, {"oids": ctx.tenant_oids, "role": ctx.runtime_role, "col": ctx.tenant_column}
    )
    for r in rows:
        _oid, schema, name, key, _type, rls, forced, owns, privs, edges = r
        exempt = bool(owns) and not forced
        reach = [c for c in _open_commands(ctx, r[0], key, rls, exempt) if c in privs]
        if not reach:
            continue
        cascades = _cascades(list(edges))
        writes = [c for c in reach if c in ("UPDATE", "DELETE")]
        what = [
            "lists every tenant" if "SELECT" in reach else "",
            "creates tenants" if "INSERT" in reach else "",
            f"{' and '.join(c.lower() for c in writes)}s other tenants' rows" if writes else "",
        ]
        message = (
            f"root of the tenant column (referenced as {schema}.{name}.{key}): the runtime role "
            f"{'; '.join(w for w in what if w)} ({', '.join(reach)} not pinned to the bound tenant)"
        )
        if writes and cascades:
            message += "; referential actions carry it into the tenant tables: " + ", ".join(
                cascades
            )
        yield Finding(
            RULE,
            f"{schema}.{name}",
            message,
            severity=None if writes else (Severity.HIGH if "SELECT" in reach else Severity.MEDIUM),
            fix_sql=_fix(ctx, r),
        )
