"""TGA106 parent-without-tenant-column: an inheritance parent with no tenant column and no
RLS shows its tenant children's rows to whoever can query it."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext, sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA106",
    name="parent-without-tenant-column",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="Inheritance parent without the tenant column and without RLS over a tenant table",
    description="A query on an inheritance parent also returns its children's rows, and only "
    "the parent's row level security applies to them: the child's policies do not. A parent "
    "that has no tenant column (so it is not a tenant table) and no RLS shows every tenant's "
    "rows of every child to a role that can query it, and lets UPDATE and DELETE through it "
    "reach them.",
    anti_pattern="CREATE TABLE app.base (id bigint, body text);\n"
    "CREATE TABLE app.notes (tenant_id bigint NOT NULL) INHERITS (app.base);\n"
    "-- tenantguard protect app.notes\n"
    "GRANT SELECT ON app.base, app.notes TO app_user;",
    best_practice="REVOKE ALL ON app.base FROM app_user;  -- or give the parent the tenant "
    "column and protect it",
)

_ANCESTORS = """
WITH RECURSIVE up(child, parent) AS (
    SELECT i.inhrelid, i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid = ANY(%(oids)s)
    UNION
    SELECT up.child, i.inhparent FROM up JOIN pg_catalog.pg_inherits i ON i.inhrelid = up.parent
)
SELECT up.child::int, n.nspname::text, c.relname::text,
       ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'UPDATE', 'DELETE']) p
             WHERE pg_catalog.has_table_privilege(%(role)s, c.oid, p)
                OR (p <> 'DELETE' AND pg_catalog.has_any_column_privilege(%(role)s, c.oid, p)))
FROM up
JOIN pg_catalog.pg_class c ON c.oid = up.parent
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND NOT c.relrowsecurity AND NOT (c.oid = ANY(%(oids)s))
ORDER BY 2, 3, 1
"""


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    by_oid = {t.oid: t for t in ctx.tables}
    for child_oid, schema, name, privs in ctx.fetch(
        _ANCESTORS, {"oids": ctx.tenant_oids, "role": ctx.runtime_role}
    ):
        child = by_oid[child_oid]
        if not privs or not child.rls:
            continue  # unreachable; or the child leaks by itself (TGA101)
        parent = sql.Identifier(schema, name)
        yield Finding(
            RULE,
            f"{schema}.{name}",
            f"parent of {child.label} has no {child.tenant_column} column and no RLS, and the "
            f"runtime role has {', '.join(privs)} on it: {child.label}'s rows of every tenant "
            "are reachable through it",
            fix_sql=sql.SQL("REVOKE ALL ON {} FROM {};")
            .format(parent, sql.Identifier(ctx.runtime_role))
            .as_string(ctx.conn)
            + "\n"
            + sql_comment("or add the tenant column to the parent and protect it"),
        )
