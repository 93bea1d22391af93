"""TGL109 session-level-tenant-set: the tenant setting set for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit
from tenantguard.tooling.sqlanalysis import call_name, walk

RULE = Rule(
    code="TGL109",
    name="session-level-tenant-set",
    severity=as_audit("TGA112"),  # one severity per defect
    tool="lint",
    summary="The tenant setting is set for the session (SET / set_config(.., false))",
    description="A session-level value outlives the transaction: behind a pool or PgBouncer in "
    "transaction mode it reaches the next client, who then acts as that tenant.",
    anti_pattern="SET app.tenant_id = '42';",
    best_practice="SET LOCAL app.tenant_id = '42';  -- or set_config('app.tenant_id', '42', true)",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        if isinstance(st.node, ast.AlterRoleSetStmt | ast.AlterDatabaseSetStmt):
            setstmt = st.node.setstmt
            if setstmt is not None and setstmt.name == ctx.setting:
                yield finding(
                    RULE,
                    st,
                    ctx.setting,
                    "a persistent default (ALTER ROLE/DATABASE ... SET): every session starts "
                    "with a tenant bound",
                )
            continue
        for n in walk(st.node):
            if isinstance(n, ast.VariableSetStmt) and n.name == ctx.setting and not n.is_local:
                yield finding(RULE, st, ctx.setting, "SET without LOCAL")
            elif isinstance(n, ast.FuncCall) and call_name(n)[1] == "set_config":
                args = n.args or ()
                name = getattr(getattr(args[0], "val", None), "sval", None) if args else None
                local = (
                    len(args) > 2
                    and isinstance(args[2], ast.A_Const)
                    and getattr(args[2].val, "boolval", False)
                )
                if name == ctx.setting and not local:
                    yield finding(RULE, st, ctx.setting, "set_config(.., false): session-level")
