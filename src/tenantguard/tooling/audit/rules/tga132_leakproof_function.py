"""TGA132 user-leakproof-function: a user function is marked LEAKPROOF."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import FUNCTION_EXCLUDED_SCHEMAS, AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA132",
    name="user-leakproof-function",
    severity=Severity.MEDIUM,
    tool="audit",
    summary="User-defined LEAKPROOF function",
    description="The planner may run LEAKPROOF functions on rows before the RLS filter. A user "
    "function that is not really leak-proof (errors, notices, timing on its argument) can "
    "reveal other tenants' values.",
    anti_pattern="CREATE FUNCTION app.eq(a text, b text) ... LEAKPROOF;",
    best_practice="ALTER FUNCTION app.eq(text, text) NOT LEAKPROOF;",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    rows = ctx.fetch(
        "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p "
        "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "WHERE p.proleakproof AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%' ORDER BY 1",
        (list(FUNCTION_EXCLUDED_SCHEMAS),),
    )
    for (fn,) in rows:
        yield Finding(
            RULE,
            f"function {fn}",
            "marked LEAKPROOF",
            fix_sql=f"ALTER FUNCTION {fn} NOT LEAKPROOF;",
        )
