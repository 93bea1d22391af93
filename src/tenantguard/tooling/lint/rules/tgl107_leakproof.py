"""TGL107 leakproof-function: a migration marks a function LEAKPROOF."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit

RULE = Rule(
    code="TGL107",
    name="leakproof-function",
    severity=as_audit("TGA132"),  # one severity per defect
    tool="lint",
    summary="Function declared LEAKPROOF",
    description="LEAKPROOF functions may run before RLS filters; one that errors or logs on its "
    "input reveals other tenants' values.",
    anti_pattern="CREATE FUNCTION app.eq(a text, b text) ... LEAKPROOF ...;",
    best_practice="Leave functions NOT LEAKPROOF unless they provably reveal nothing.",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.CreateFunctionStmt | ast.AlterFunctionStmt):
            options = n.options if isinstance(n, ast.CreateFunctionStmt) else n.actions
            if any(
                o.defname == "leakproof" and getattr(o.arg, "boolval", False) for o in options or ()
            ):
                yield finding(RULE, st, "function", "declared LEAKPROOF")
