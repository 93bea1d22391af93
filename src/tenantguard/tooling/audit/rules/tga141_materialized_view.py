"""TGA141 materialized-view-over-tenant-table: RLS never applies to a materialized view."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext, sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA141",
    name="materialized-view-over-tenant-table",
    severity=Severity.HIGH,
    tool="audit",
    summary="Materialized view over a tenant table",
    description="A materialized view stores the rows its owner could see when refreshed and has "
    "no row level security of its own: whoever can read it reads every tenant's rows.",
    anti_pattern="CREATE MATERIALIZED VIEW app.totals AS SELECT tenant_id, sum(amount) ...;",
    best_practice="CREATE VIEW app.totals WITH (security_invoker = true) AS SELECT tenant_id, sum(amount) ...;  "
    "-- PG 15+; or a table with RLS refreshed by a job",
)


_READERS = """
SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END
FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
WHERE c.oid = %s::regclass AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner
ORDER BY 1 NULLS FIRST
"""


def _fix(ctx: AuditContext, schema: str, name: str, owner: str, definition: str | None) -> str:
    """Replace the materialized view by a view of the same query that reads as its caller
    (RLS applies to each reader), owned and readable as before; a comment before
    PostgreSQL 15 (no security_invoker) or without a definition."""
    ident = sql.Identifier(schema, name)
    if ctx.server_version_num < 150000 or not definition:
        return sql_comment(
            "a decision for a person: row level security never applies to a materialized "
            "view. Revoke SELECT from the runtime role (and PUBLIC) and drop it, or replace "
            "it with a table protected by tenantguard and refreshed by a job"
        )
    # The definition with every name schema-qualified (deparsed against an empty path), run
    # under the same path, so it binds to the same objects whatever the pasting session's is.
    with ctx.conn.transaction(force_rollback=True):
        ctx.conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        row = ctx.conn.execute(
            "SELECT pg_catalog.pg_get_viewdef(%s::regclass)", (ident.as_string(ctx.conn),)
        ).fetchone()
    definition = row[0] if row else definition
    readers = [
        sql.SQL("PUBLIC") if r is None else sql.Identifier(r)
        for (r,) in ctx.fetch(_READERS, (ident.as_string(ctx.conn),))
    ]
    stmts = [
        sql.SQL("DROP MATERIALIZED VIEW {}").format(ident),
        sql.SQL("CREATE VIEW {} WITH (security_invoker = true) AS {}").format(
            ident, sql.SQL(definition.strip().rstrip(";"))
        ),
        sql.SQL("ALTER VIEW {} OWNER TO {}").format(ident, sql.Identifier(owner)),
    ]
    if readers:
        stmts.append(sql.SQL("GRANT SELECT ON {} TO {}").format(ident, sql.SQL(", ").join(readers)))
    return "\n".join(
        [
            sql_comment(
                "row level security never applies to a materialized view: this replaces it by "
                "a view of the same query that reads as its caller (each reader sees its own "
                "tenant's rows; no longer stored, REFRESH no longer applies). Or drop it, or "
                "replace it with a protected table refreshed by a job."
            ),
            "BEGIN;",
            "SET LOCAL search_path = pg_catalog, pg_temp;",
            *(st.as_string(ctx.conn) + ";" for st in stmts),
            "COMMIT;",
        ]
    )


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for (
        view,
        owner,
        _bypass,
        kind,
        readable,
        schema,
        name,
        _barrier,
        definition,
    ) in ctx.tenant_views:
        if kind != "m":
            continue
        yield Finding(
            RULE,
            f"materialized view {view}",
            f"copies tenant rows (owner {owner!r})"
            + ("; the runtime role can read it: rated critical" if readable else ""),
            severity=Severity.CRITICAL if readable else None,
            fix_sql=_fix(ctx, schema, name, owner, definition),
        )
