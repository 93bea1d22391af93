"""TGL102 rls-weakened: DISABLE / NO FORCE row level security or DROP POLICY."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.lint.engine import LintContext, Statement, finding, pinned, rel_name

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
                table = ".".join(parts[:-1]) if len(parts) > 2 else f"public.{parts[0]}"
                if _recreated(ctx, st, table, parts[-1]):
                    continue  # DROP POLICY IF EXISTS p; CREATE POLICY p ...: a replacement
                yield finding(RULE, st, table, f"DROP POLICY {parts[-1]}")


def _recreated(ctx: LintContext, drop: Statement, table: str, name: str) -> bool:
    """Is policy *name* on *table* created again, pinned, later in the same file?"""
    for st in ctx.policies.get(table, []):
        p: Any = st.node
        if st.path == drop.path and st.line > drop.line and p.policy_name == name:
            return pinned(ctx, p.qual, table) or pinned(ctx, p.with_check, table)
    return False
