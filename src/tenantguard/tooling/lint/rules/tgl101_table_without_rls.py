"""TGL101 table-without-rls: a tenant table created without ENABLE + FORCE + a policy."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.lint.engine import LintContext, finding

RULE = Rule(
    code="TGL101",
    name="table-without-rls",
    severity=Severity.CRITICAL,
    tool="lint",
    summary="Tenant table created without ENABLE + FORCE row level security and a policy",
    description="A table with the tenant column must get RLS in the same migration that creates "
    "it; otherwise it ships unprotected and any query with a forgotten WHERE leaks.",
    anti_pattern="CREATE TABLE app.invoices (tenant_id bigint NOT NULL, ...);",
    best_practice="CREATE TABLE app.invoices (...);\nALTER TABLE app.invoices ENABLE ROW LEVEL "
    "SECURITY;\nALTER TABLE app.invoices FORCE ROW LEVEL SECURITY;\nCREATE POLICY ...;",
)


def check(ctx: LintContext) -> Iterator[Finding]:
    for name, st in ctx.tenant_tables.items():
        missing = [
            what
            for what, ok in (
                ("ENABLE ROW LEVEL SECURITY", name in ctx.rls_enabled),
                ("FORCE ROW LEVEL SECURITY", name in ctx.rls_forced),
                ("a policy", bool(ctx.policies.get(name))),
            )
            if not ok
        ]
        if missing:
            yield finding(
                RULE,
                st,
                name,
                f"created without {', '.join(missing)}",
                fix=f"-- tenantguard protect {name} --dry-run  (prints the SQL)",
            )
