"""TGL104 fail-open-predicate: a policy that is true with no tenant bound, or always true."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding, rel_name
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit
from tenantguard.tooling.sqlanalysis import fail_open_problems

RULE = Rule(
    code="TGL104",
    name="fail-open-predicate",
    severity=as_audit("TGA120"),  # one severity per defect
    tool="lint",
    summary="Policy predicate can be true without the tenant (OR branch, IS NULL, coalesce, true)",
    description="An OR whose branch does not restrict by tenant (current_setting(..) IS NULL, "
    "= '', an admin flag), a coalesce() default, or a literal true lets rows through when no "
    "tenant is bound or for anyone who can set a setting.",
    anti_pattern="USING (current_setting('app.tenant_id', true) IS NULL OR tenant_id = ...)",
    best_practice="USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        p = st.node
        if not isinstance(p, ast.CreatePolicyStmt):
            continue
        for label, expr in (("USING", p.qual), ("WITH CHECK", p.with_check)):
            for problem in fail_open_problems(expr, ctx.key_of(rel_name(p.table))):
                yield finding(
                    RULE,
                    st,
                    f"policy {p.policy_name} on {rel_name(p.table)}",
                    f"{label}: {problem}",
                )
