"""TGA102 rls-not-forced: RLS enabled but not forced, so the table owner bypasses it."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA102",
    name="rls-not-forced",
    severity=Severity.MEDIUM,
    tool="audit",
    summary="Row level security is not forced: the owner bypasses the policies",
    description="Without FORCE ROW LEVEL SECURITY the table owner (often the migration role, "
    "sometimes the app by mistake) is exempt from every policy. One more mistake (connecting "
    "as the owner) leaks all tenants.",
    anti_pattern="ALTER TABLE app.invoices ENABLE ROW LEVEL SECURITY;  -- no FORCE",
    best_practice="ALTER TABLE app.invoices FORCE ROW LEVEL SECURITY;",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        if t.rls and not t.forced:
            yield Finding(
                RULE,
                t.label,
                f"RLS is enabled but not forced; owner {t.owner!r} is exempt",
                fix_sql=sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY;")
                .format(t.name.ident)
                .as_string(),
            )
