"""TGA141 materialized-view-over-tenant-table: RLS never applies to a materialized view."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.catalog import AuditContext
from tenantguard.tooling.audit.rules.tga140_view_without_security_invoker import _QUERY
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
    best_practice="Revoke SELECT from the runtime role, or use a table with RLS refreshed by a job.",
)


def check(ctx: AuditContext) -> Iterator[Finding]:
    for view, owner, _bypass, kind, readable, schema, name, *_ in ctx.fetch(
        _QUERY, {"role": ctx.runtime_role, "oids": ctx.tenant_oids}
    ):
        if kind != "m":
            continue
        yield Finding(
            RULE,
            f"materialized view {view}",
            f"copies tenant rows (owner {owner!r})"
            + ("; the runtime role can read it" if readable else ""),
            severity=Severity.CRITICAL if readable else None,
            fix_sql=sql.SQL("REVOKE ALL ON {} FROM {};")
            .format(sql.Identifier(schema, name), sql.Identifier(ctx.runtime_role))
            .as_string(),
        )
