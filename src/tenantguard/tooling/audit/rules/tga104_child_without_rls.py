"""TGA104 child-without-rls: a partition or inheritance child reachable without RLS."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA104",
    name="child-without-rls",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="Partition or child table reachable directly without its own RLS",
    description="Policies on a parent apply when the parent is queried. A partition or child "
    "queried by name uses its own RLS settings: without them it returns every tenant's rows.",
    anti_pattern="CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES ...;\n"
    "GRANT SELECT ON app.events_2026 TO app_user;  -- no RLS on the partition",
    best_practice="tenantguard protect app.events_2026 ...  -- or revoke direct access",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    by_name = {str(t.name): t for t in ctx.tables}
    for t in ctx.tables:
        if not t.parents or (t.rls and any(p.permissive for p in t.policies)):
            continue
        protected_parent = (
            any((p := by_name.get(name)) is not None and p.rls for name in t.parents)
            or not t.parents
        )
        if t.privileges and protected_parent and not t.rls:
            yield Finding(
                RULE,
                t.label,
                f"child of {', '.join(t.parents)} has no RLS and the runtime role has "
                f"{', '.join(sorted(t.privileges))} on it",
                fix_sql=t.protect_sql(),
            )
