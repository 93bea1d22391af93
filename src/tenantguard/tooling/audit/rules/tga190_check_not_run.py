"""TGA190 check-not-run: a live check could not run, so it proves nothing either way."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA190",
    name="check-not-run",
    severity=Severity.HIGH,
    tool="audit",
    summary="A live check could not run: nothing is known about what it checks",
    description="Some checks run queries as the runtime role (in transactions that roll back) "
    "or read sample rows. When the administrator cannot act as the runtime role (not a "
    "superuser, not a member with SET, and unable to grant itself that membership), or row "
    "level security hides the rows the check must read, the check is reported here with "
    "the privilege it needs, never counted as clean: the run exits 1 whatever --fail-on says.",
    anti_pattern="-- PostgreSQL 16+, an admin with neither SET nor ADMIN OPTION on app_user:\n"
    "tenantguard audit --dsn postgresql://admin@db/app --app-role app_user",
    best_practice="GRANT app_user TO admin WITH INHERIT FALSE, SET TRUE;  -- or:\n"
    "tenantguard audit --dsn postgresql://admin@db/app "
    "--app-dsn postgresql://app_user@db/app",
    coverage=True,
)


def not_run(ctx: AuditContext, code: str, obj: str, why: str) -> Finding:
    """A finding for rule *code*'s check on *obj*, which could not run because *why*."""
    return Finding(
        RULE,
        obj,
        f"{code} could not be checked: {why}",
        fix_sql=ctx.access.fix if ctx.access is not None and not ctx.access.available else None,
    )


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    """The run-level finding: the admin cannot act as the runtime role at all."""
    if ctx.access is not None and not ctx.access.available:
        yield Finding(
            RULE,
            f"role {ctx.runtime_role}",
            f"the checks that run as the runtime role could not run: {ctx.access.problem}",
            fix_sql=ctx.access.fix,
        )
