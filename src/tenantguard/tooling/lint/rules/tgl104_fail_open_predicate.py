"""TGL104 fail-open-predicate: a policy that is true with no tenant bound, or always true."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.lint.engine import LintContext, finding, mentions_column, rel_name, walk

RULE = Rule(
    code="TGL104",
    name="fail-open-predicate",
    severity=Severity.CRITICAL,
    tool="lint",
    summary="Policy predicate can be true without the tenant (OR branch, IS NULL, coalesce, true)",
    description="An OR whose branch does not restrict by tenant (current_setting(..) IS NULL, "
    "= '', an admin flag), a coalesce() default, or a literal true lets rows through when no "
    "tenant is bound or for anyone who can set a setting.",
    anti_pattern="USING (current_setting('app.tenant_id', true) IS NULL OR tenant_id = ...)",
    best_practice="USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))",
)


def _problems(expr: Any, column: str) -> list[str]:
    if expr is None:
        return []
    out = []
    if isinstance(expr, ast.A_Const) and isinstance(expr.val, ast.Boolean) and expr.val.boolval:
        out.append("always true")
    for n in walk(expr):
        if isinstance(n, ast.BoolExpr) and getattr(n.boolop, "name", "") == "OR_EXPR":
            loose = [a for a in n.args or () if not mentions_column(a, column)]
            if loose:
                out.append("an OR branch does not restrict by the tenant column")
        elif isinstance(n, ast.CoalesceExpr) and any(
            isinstance(x, ast.FuncCall)
            and getattr((x.funcname or (None,))[-1], "sval", "") == "current_setting"
            for x in walk(n)
        ):
            out.append("coalesce() gives the setting a default")
    return sorted(set(out))


def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        p = st.node
        if not isinstance(p, ast.CreatePolicyStmt):
            continue
        for label, expr in (("USING", p.qual), ("WITH CHECK", p.with_check)):
            for problem in _problems(expr, ctx.tenant_column):
                yield finding(
                    RULE,
                    st,
                    f"policy {p.policy_name} on {rel_name(p.table)}",
                    f"{label}: {problem}",
                )
