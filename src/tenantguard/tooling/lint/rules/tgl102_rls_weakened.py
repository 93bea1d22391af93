"""TGL102 rls-weakened: DISABLE / NO FORCE row level security or DROP POLICY."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.lint.engine import (
    LintContext,
    Statement,
    finding,
    pinned,
    rel_name,
    statements_after,
)
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit

RULE = Rule(
    code="TGL102",
    name="rls-weakened",
    severity=as_audit("TGA101"),  # the worst case; per finding as the audit rates the result
    tool="lint",
    summary="A migration disables RLS, removes FORCE, or drops a policy",
    description="Turning RLS off (even 'temporarily' for a backfill) or dropping a policy opens "
    "the table to every tenant until someone notices. DISABLE is critical (as the audit's "
    "TGA101), high when the files turn RLS back on later; NO FORCE medium (TGA102); DROP "
    "POLICY high.",
    anti_pattern="ALTER TABLE app.invoices DISABLE ROW LEVEL SECURITY;",
    best_practice="Backfill as a role with BYPASSRLS in a separate, audited job; keep RLS on.",
)

_WEAKEN = {
    "AT_DisableRowSecurity": "DISABLE ROW LEVEL SECURITY",
    "AT_NoForceRowSecurity": "NO FORCE ROW LEVEL SECURITY",
}


# Rated as the audit rates the state left behind: RLS off is TGA101 (critical), unless a
# later statement of the files turns it back on (high: every tenant is exposed in between);
# NO FORCE is TGA102 (medium).
_UNDONE_BY = {
    "AT_DisableRowSecurity": "AT_EnableRowSecurity",
    "AT_NoForceRowSecurity": "AT_ForceRowSecurity",
}
_AUDIT = {"AT_DisableRowSecurity": "TGA101", "AT_NoForceRowSecurity": "TGA102"}


def _undone_later(ctx: LintContext, st: Statement, table: str, undo: str) -> bool:
    for other in statements_after(ctx, st):
        n: Any = other.node
        if (
            isinstance(n, ast.AlterTableStmt)
            and n.relation is not None
            and rel_name(n.relation) == table
            and any(getattr(c.subtype, "name", "") == undo for c in n.cmds or ())
        ):
            return True
    return False


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.AlterTableStmt) and n.relation is not None:
            for cmd in n.cmds or ():
                sub = getattr(cmd.subtype, "name", "")
                what = _WEAKEN.get(sub)
                if not what:
                    continue
                table = rel_name(n.relation)
                severity = as_audit(_AUDIT[sub])
                if _undone_later(ctx, st, table, _UNDONE_BY[sub]):
                    what += " (turned back on later: exposed in between)"
                    severity = min(severity, Severity.HIGH)
                yield finding(RULE, st, table, what, severity=severity)
        elif isinstance(n, ast.DropStmt) and getattr(n.removeType, "name", "") == "OBJECT_POLICY":
            for obj in n.objects or ():
                parts = [getattr(p, "sval", "") for p in obj]
                table = ".".join(parts[:-1]) if len(parts) > 2 else f"public.{parts[0]}"
                if _recreated(ctx, st, table, parts[-1]):
                    continue  # DROP POLICY IF EXISTS p; CREATE POLICY p ...: a replacement
                yield finding(RULE, st, table, f"DROP POLICY {parts[-1]}", severity=Severity.HIGH)


def _recreated(ctx: LintContext, drop: Statement, table: str, name: str) -> bool:
    """Is policy *name* on *table* created again, pinned, later in the same file?"""
    for st in ctx.policies.get(table, []):
        p: Any = st.node
        if st.path == drop.path and st.line > drop.line and p.policy_name == name:
            return pinned(ctx, p.qual, table) or pinned(ctx, p.with_check, table)
    return False
