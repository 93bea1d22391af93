"""TGA101 rls-disabled: a tenant table without ROW LEVEL SECURITY enabled."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA101",
    name="rls-disabled",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="Tenant table without row level security",
    description="Without ENABLE ROW LEVEL SECURITY no policy applies: any query with a forgotten "
    "WHERE reads and writes every tenant's rows.",
    anti_pattern="CREATE TABLE app.invoices (tenant_id bigint NOT NULL, ...);  -- no RLS",
    best_practice="ALTER TABLE app.invoices ENABLE ROW LEVEL SECURITY;\n"
    "ALTER TABLE app.invoices FORCE ROW LEVEL SECURITY;  -- plus tenant policies",
)


def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        if not t.rls and not t.parents:  # children: TGA104
            reach = ", ".join(sorted(t.privileges)) or "no direct privileges"
            yield Finding(
                RULE,
                t.label,
                f"row level security is disabled (runtime role {ctx.runtime_role!r}: {reach})",
                fix_sql=t.protect_sql(),
            )
