"""TGL108 view-without-security-invoker: a view over a tenant table runs as its owner."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding, rel_name, walk
from tenantguard.tooling.lint.severity import as_audit

RULE = Rule(
    code="TGL108",
    name="view-without-security-invoker",
    severity=as_audit("TGA140"),  # one severity per defect
    tool="lint",
    summary="View over a tenant table without security_invoker",
    description="Views read their tables with the view owner's rights; created by a migration "
    "role that bypasses RLS, the view returns every tenant's rows.",
    anti_pattern="CREATE VIEW app.v AS SELECT * FROM app.invoices;",
    best_practice="CREATE VIEW app.v WITH (security_invoker = true) AS SELECT * FROM app.invoices;",
)


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
        if hit and not invoker:
            yield finding(
                RULE, st, rel_name(n.view), f"reads {', '.join(hit)} without security_invoker"
            )
