"""TGA125 policy-trusts-writable-table: a policy reads a table the runtime role can write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext, Policy, Table
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import func_names, parse_expr, relations_in

RULE = Rule(
    code="TGA125",
    name="policy-trusts-writable-table",
    severity=Severity.HIGH,
    tool="audit",
    summary="A policy trusts a table the runtime role can write",
    description="A policy such as USING (tenant_id IN (SELECT tenant_id FROM memberships WHERE "
    "user_id = ...)) is only as strong as the table it reads. If the runtime role can INSERT or "
    "UPDATE that table (and no row level security limits what it writes there), SQL on the app "
    "connection can add a membership in another tenant and then read or change that tenant's "
    "rows. Tables read by user functions the policy calls are checked too; tables with row "
    "level security that applies to the runtime role are left to their own policies' rules.",
    anti_pattern="CREATE POLICY member ON app.docs USING (tenant_id IN (\n"
    "  SELECT m.tenant_id FROM app.memberships m\n"
    "  WHERE m.user_id = current_setting('app.user_id')));\n"
    "GRANT INSERT ON app.memberships TO app_user;",
    best_practice="REVOKE INSERT, UPDATE ON app.memberships FROM app_user;  -- or protect it:\n"
    "ALTER TABLE app.memberships ENABLE ROW LEVEL SECURITY;\n"
    "ALTER TABLE app.memberships FORCE ROW LEVEL SECURITY;  -- with a tenant-pinned WITH CHECK",
)

_RESOLVE = """
SELECT c.oid::int, c.oid::regclass::text, n.nspname::text, c.relname::text,
       c.relrowsecurity AND (c.relforcerowsecurity
                             OR NOT pg_catalog.pg_has_role(%(role)s, c.relowner, 'USAGE')),
       ARRAY(SELECT p FROM unnest(ARRAY['INSERT', 'UPDATE']) p
             WHERE pg_catalog.has_table_privilege(%(role)s, c.oid, p)
                OR pg_catalog.has_any_column_privilege(%(role)s, c.oid, p))
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = %(name)s AND c.relkind IN ('r', 'p', 'v', 'f')
  AND CASE WHEN %(schema)s::text IS NULL THEN pg_catalog.pg_table_is_visible(c.oid)
           ELSE n.nspname = %(schema)s END
"""


Ref = tuple[tuple[str | None, str] | None, str | None, str, str]


def _references(ctx: AuditContext, expr: str | None) -> list[Ref]:
    """(function call or None, schema, table, via) for each table *expr* reads: directly,
    or inside a user function it calls (then *call* is that call as written)."""
    refs: list[Ref] = [(None, s, n, "") for s, n in relations_in(parse_expr(expr))]
    for schema, name in func_names(expr):
        if not ctx.is_helper(schema, name):
            continue
        for f in ctx.functions:
            if f.name != name or (schema is not None and f.schema != schema):
                continue
            path = f.lookup_path(ctx.session_schemas)
            for s, n in relations_in(f.statements or []):
                if s is None and path:  # the first schema of the path holding it
                    s = next((sp for sp in path if _writable(ctx, sp, n)), path[0])
                refs.append(((schema, name), s, n, f" (in {f.signature})"))
    return refs


def _writable(ctx: AuditContext, schema: str | None, name: str) -> list[tuple[Any, ...]]:
    rows = ctx.fetch(_RESOLVE, {"role": ctx.runtime_role, "name": name, "schema": schema})
    return [r for r in rows if r[5] and not r[4]]


def _policy_findings(ctx: AuditContext, t: Table, p: Policy) -> Iterator[Finding]:
    seen: set[int] = set()
    for expr in (p.qual, p.with_check):
        hits = [
            (ref, row)
            for ref in _references(ctx, expr)
            for row in _writable(ctx, ref[1], ref[2])
            if row[0] != t.oid
        ]
        if not hits:
            continue
        # Still pinned to the tenant without those tables? Then they decide nothing.
        distrust = frozenset((ref[1], ref[2]) for ref, _ in hits if ref[0] is None)
        calls = frozenset(ref[0] for ref, _ in hits if ref[0] is not None)
        if ctx.pinned(expr, t.tenant_column, distrust, calls):
            continue
        for (_call, _s, _n, via), (oid, label, nsp, rel, _rls, privs) in hits:
            if oid in seen:
                continue
            seen.add(oid)
            yield Finding(
                RULE,
                f"{p.label} on {t.label}",
                f"reads {label}{via}, which {ctx.runtime_role!r} can {' and '.join(privs)} "
                "without row level security: it can grant itself another tenant's rows",
                fix_sql=sql.SQL("REVOKE INSERT, UPDATE ON {} FROM {};")
                .format(sql.Identifier(nsp, rel), sql.Identifier(ctx.runtime_role))
                .as_string()
                + "\n-- or ENABLE + FORCE row level security on it with a tenant-pinned "
                "WITH CHECK",
            )


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        if not t.rls:
            continue
        applicable = [p for p in t.policies if ctx.applies(p)]
        # An independent restrictive guard (pinned, reading nothing writable) keeps the
        # trusted table from widening access beyond the tenant.
        guarded = any(
            not r.permissive
            and r.command == "ALL"
            and ctx.pinned(r.qual, t.tenant_column)
            and not any(_writable(ctx, ref[1], ref[2]) for ref in _references(ctx, r.qual))
            for r in applicable
        )
        if guarded:
            continue
        for p in applicable:
            yield from _policy_findings(ctx, t, p)
