"""TGA161 per-row-policy-call: a policy calls a function per row where an InitPlan would do."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import call_name, walk, walk_expr

RULE = Rule(
    code="TGA161",
    name="per-row-policy-call",
    severity=Severity.LOW,
    tool="audit",
    summary="Policy calls a function outside a scalar sub-select (evaluated per row)",
    description="current_setting() or a helper called directly in a policy can be evaluated for "
    "every row of a filter; wrapped in (SELECT ...) it becomes an InitPlan evaluated once per "
    "query and still drives an index scan.",
    anti_pattern="USING (tenant_id = current_setting('app.tenant_id')::bigint)",
    best_practice="USING (tenant_id = (SELECT current_setting('app.tenant_id')::bigint))",
)


def _bare_calls(expr: str | None) -> bool:
    nodes = walk_expr(expr)
    inside: set[int] = set()
    for n in nodes:
        if isinstance(n, ast.SubLink):
            inside |= {id(x) for x in walk(n)}
    return any(
        isinstance(n, ast.FuncCall)
        and id(n) not in inside
        and call_name(n)[1] not in {"coalesce", "nullif"}
        for n in nodes
    )


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        for p in t.policies:
            if _bare_calls(p.qual):
                yield Finding(
                    RULE,
                    f"{p.label} on {t.label}",
                    f"USING ({p.qual}) calls a function outside a sub-select",
                    fix_sql="-- wrap the call: (SELECT <call>)",
                )
