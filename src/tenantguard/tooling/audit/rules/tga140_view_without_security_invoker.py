"""TGA140 view-bypasses-rls: a view over a tenant table that runs as a role skipping RLS."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import statements_or_none, view_filters_tenant

RULE = Rule(
    code="TGA140",
    name="view-without-security-invoker",
    severity=Severity.HIGH,
    tool="audit",
    summary="View over a tenant table without security_invoker",
    description="A view reads its tables with its owner's rights. If the owner is a superuser "
    "or BYPASSRLS role (views are often created by the migration role), the view returns "
    "every tenant's rows to anyone who can select from it. Not reported: a view with "
    "security_barrier whose own WHERE pins the tenant column of the one tenant table it reads "
    "(the view does the tenant filtering, and the barrier keeps a caller's functions from "
    "seeing rows before it does).",
    anti_pattern="CREATE VIEW app.big_invoices AS SELECT * FROM app.invoices WHERE amount > 100;",
    best_practice="CREATE VIEW app.big_invoices WITH (security_invoker = true) AS ...;  -- PG 15+",
)


def filters_tenant(ctx: AuditContext, definition: str | None) -> bool:
    """Does the view body (pg_get_viewdef) keep to the bound tenant on its own?"""
    stmts = statements_or_none(definition)
    if stmts is None or len(stmts) != 1:
        return False
    path = ctx.session_schemas  # pg_get_viewdef qualifies names against this session's path
    distrust = frozenset((t.name.schema, t.name.name) for t in ctx.tables) | frozenset(
        (None, t.name.name) for t in ctx.tables
    )

    def tenant_key(schema: str | None, name: str) -> str | None:
        hit = ctx.tables_named(schema, name, path)
        return hit[0].tenant_column if len(hit) == 1 else None

    return view_filters_tenant(
        stmts[0], tenant_key, lambda node, column: ctx.pinned(node, column, distrust)
    )


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for view, owner, bypass, kind, readable, schema, name, barrier, definition in ctx.tenant_views:
        if kind == "m":
            continue  # materialized views: TGA141
        if barrier and filters_tenant(ctx, definition):
            continue  # the view pins the tenant itself, behind a security barrier
        sev = Severity.CRITICAL if bypass and readable else None
        ident = sql.Identifier(schema, name)
        yield Finding(
            RULE,
            f"view {view}",
            f"reads tenant tables as {owner!r}"
            + (
                " (RLS does not apply to it there: a superuser, BYPASSRLS, or the owner of a "
                "table the view reads that does not FORCE RLS), readable by the runtime role: "
                "critical"
                if sev
                else ": high, not critical: RLS applies to the owner, or the runtime role "
                "cannot read the view; its rows are still filtered as the owner's, not the caller's"
            ),
            severity=sev,
            fix_sql=sql.SQL("ALTER VIEW {} SET (security_invoker = true);")
            .format(ident)
            .as_string(),
        )
