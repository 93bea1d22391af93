"""TGL114 unpinned-permissive-policy: a permissive policy that does not look at the tenant."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import (
    LintContext,
    finding,
    has_restrictive_guard,
    pinned,
    rel_name,
)
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.rules.tgl101_table_without_rls import protect_fix
from tenantguard.tooling.lint.severity import as_audit
from tenantguard.tooling.sqlanalysis import fail_open_problems

RULE = Rule(
    code="TGL114",
    name="unpinned-permissive-policy",
    severity=as_audit("TGA124"),  # one severity per defect
    tool="lint",
    summary="A permissive policy on a tenant table whose USING does not pin the tenant",
    description="Permissive policies are ORed: one that admits rows on some other ground "
    "(USING (is_public), USING (owner_id = current_user_id())) widens every tenant's view "
    "to rows of other tenants, unless a restrictive tenant guard is ANDed with it. The "
    "audit's policy-logic check, applied to the policies a migration creates.",
    anti_pattern="CREATE POLICY public_docs ON app.docs FOR SELECT USING (visibility = 'public');",
    best_practice="CREATE POLICY tg ON app.docs AS RESTRICTIVE FOR ALL\n"
    "  USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))\n"
    "  WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint));  -- tenantguard protect",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        p = st.node
        if not isinstance(p, ast.CreatePolicyStmt) or not p.permissive or p.qual is None:
            continue
        table = rel_name(p.table)
        if table not in ctx.tenant_tables or isinstance(p.qual, ast.A_Const):
            continue  # constants: TGL104 reports an always-true USING
        if pinned(ctx, p.qual, table) or has_restrictive_guard(ctx, table):
            continue
        if fail_open_problems(p.qual, ctx.key_of(table)):
            continue  # a fail-open OR / coalesce / true: TGL104 reports it
        yield finding(
            RULE,
            st,
            f"policy {p.policy_name} on {table}",
            f"USING does not pin {ctx.key_of(table)} to the bound tenant and no restrictive "
            "tenant guard is ANDed with it: rows of other tenants pass",
            fix=protect_fix(ctx, table),  # adds the restrictive guard
        )
