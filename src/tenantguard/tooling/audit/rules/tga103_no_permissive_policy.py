"""TGA103 no-permissive-policy: RLS enabled, but no permissive policy grants anything."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA103",
    name="no-permissive-policy",
    severity=Severity.LOW,
    tool="audit",
    summary="RLS enabled without a permissive policy: every row is hidden",
    description="With RLS on and no permissive policy the table is deny-all: the runtime role "
    "reads and writes no row there. Broken, not exposed, so it is rated low (whether the "
    "owner is exempt is TGA102). Fix it with a tenant policy: the usual 'fix' under pressure "
    "is USING (true), which leaks everything.",
    anti_pattern="ALTER TABLE app.t ENABLE ROW LEVEL SECURITY;  -- and no CREATE POLICY",
    best_practice="CREATE POLICY tg_tenant_access ON app.t AS PERMISSIVE FOR ALL TO PUBLIC\n"
    "  USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))\n"
    "  WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint));",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        if t.rls and not any(p.permissive for p in t.policies):
            what = "no policy at all" if not t.policies else "only restrictive policies"
            yield Finding(
                RULE,
                t.label,
                f"RLS is enabled{' and forced' if t.forced else ''} with {what}: deny-all, the "
                f"runtime role {ctx.runtime_role!r} reads and writes no row here (broken, not "
                "exposed: rated low); give it a tenant policy, never USING (true)",
                fix_sql=t.protect_sql(),
            )
