"""TGL108 view-without-security-invoker: a view over a tenant table runs as its owner."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding, pinned_on, rel_name
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit
from tenantguard.tooling.sqlanalysis import view_filters_tenant, walk

RULE = Rule(
    code="TGL108",
    name="view-without-security-invoker",
    severity=as_audit("TGA140"),  # one severity per defect
    tool="lint",
    summary="View over a tenant table without security_invoker",
    description="Views read their tables with the view owner's rights; created by a migration "
    "role that bypasses RLS, the view returns every tenant's rows. Not reported, as the audit "
    "(TGA140): a view with security_barrier whose own WHERE pins the tenant column of the one "
    "tenant table it reads.",
    anti_pattern="CREATE VIEW app.v AS SELECT * FROM app.invoices;",
    best_practice="CREATE VIEW app.v WITH (security_invoker = true) AS SELECT * FROM app.invoices;",
)


def _filters_tenant(ctx: LintContext, view: ast.ViewStmt) -> bool:
    """security_barrier, and a body that pins the tenant of the one tenant table it reads."""
    barrier = any(
        o.defname == "security_barrier"
        and (o.arg is None or getattr(o.arg, "sval", "true") in ("true", "on", "1"))
        for o in view.options or ()
    )

    def tenant_key(schema: str | None, name: str) -> str | None:
        table = f"{schema or 'public'}.{name}"
        return ctx.key_of(table) if table in ctx.tenant_tables else None

    return barrier and view_filters_tenant(
        view.query, tenant_key, lambda node, column: pinned_on(ctx, node, column)
    )


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.AlterTableStmt) and getattr(n.objtype, "name", "") == "OBJECT_VIEW":
            for cmd in n.cmds or ():
                sub = getattr(cmd.subtype, "name", "")
                for o in cmd.def_ or ():
                    off = getattr(o, "arg", None) is not None and getattr(o.arg, "sval", "") in (
                        "false",
                        "off",
                        "0",
                    )
                    if o.defname == "security_invoker" and (sub == "AT_ResetRelOptions" or off):
                        yield finding(RULE, st, rel_name(n.relation), "turns security_invoker off")
            continue
        if not isinstance(n, ast.ViewStmt):
            continue
        invoker = any(
            o.defname == "security_invoker"
            and getattr(o.arg, "sval", "true") in ("true", "on", "1")
            for o in n.options or ()
        )
        tables = {rel_name(r) for r in walk(n.query) if isinstance(r, ast.RangeVar)}
        hit = sorted(t for t in tables if t in ctx.tenant_tables)
        if hit and not invoker and not _filters_tenant(ctx, n):
            yield finding(
                RULE, st, rel_name(n.view), f"reads {', '.join(hit)} without security_invoker"
            )
