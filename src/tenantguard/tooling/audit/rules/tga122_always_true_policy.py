"""TGA122 always-true-policy: a permissive policy that is true for every row."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import mentions_column

RULE = Rule(
    code="TGA122",
    name="always-true-policy",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="A permissive policy does not restrict by tenant, and nothing restrictive does",
    description="Permissive policies are ORed: one that does not pin the tenant (USING (true), "
    "a role-only check) widens every other policy to all tenants, unless a RESTRICTIVE tenant "
    "guard is ANDed on top.",
    anti_pattern="CREATE POLICY everyone ON app.t FOR SELECT USING (true);",
    best_practice="CREATE POLICY tg_tenant_guard ON app.t AS RESTRICTIVE FOR ALL TO PUBLIC\n"
    "  USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint)) WITH CHECK (...);",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        if not t.rls or t.restrictive_guard is not None:
            continue
        for p in t.policies:
            applies = "public" in p.roles or ctx.runtime_role in p.roles
            if (
                p.permissive
                and applies
                and p.qual is not None
                and not mentions_column(p.qual, t.tenant_column)
            ):
                yield Finding(
                    RULE,
                    f"{p.label} on {t.label}",
                    f"permissive FOR {p.command} USING ({p.qual}) does not restrict by "
                    f"{t.tenant_column}",
                    fix_sql=t.protect_sql(),
                )
