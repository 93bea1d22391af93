"""TGL102 rls-weakened: DISABLE / NO FORCE row level security or DROP POLICY."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.lint.engine import LintContext, finding, rel_name

RULE = Rule(
    code="TGL102",
    name="rls-weakened",
    severity=Severity.HIGH,
    tool="lint",
    summary="A migration disables RLS, removes FORCE, or drops a policy",
    description="Turning RLS off (even 'temporarily' for a backfill) or dropping a policy opens "
    "the table to every tenant until someone notices.",
    anti_pattern="ALTER TABLE app.invoices DISABLE ROW LEVEL SECURITY;",
    best_practice="Backfill as a role with BYPASSRLS in a separate, audited job; keep RLS on.",
)

_WEAKEN = {
    "AT_DisableRowSecurity": "DISABLE ROW LEVEL SECURITY",
    "AT_NoForceRowSecurity": "NO FORCE ROW LEVEL SECURITY",
}


def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.AlterTableStmt) and n.relation is not None:
            for cmd in n.cmds or ():
                what = _WEAKEN.get(getattr(cmd.subtype, "name", ""))
                if what:
                    yield finding(RULE, st, rel_name(n.relation), what)
        elif isinstance(n, ast.DropStmt) and getattr(n.removeType, "name", "") == "OBJECT_POLICY":
            for obj in n.objects or ():
                parts = [getattr(p, "sval", "") for p in obj]
                yield finding(RULE, st, ".".join(parts[:-1]) or "?", f"DROP POLICY {parts[-1]}")
