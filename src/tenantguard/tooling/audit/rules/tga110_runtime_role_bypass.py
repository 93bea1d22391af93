"""TGA110 runtime-role-bypasses-rls: the runtime role (or a role it can become) skips RLS."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.core.rolecheck import role_report
from tenantguard.tooling.audit.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA110",
    name="runtime-role-bypasses-rls",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="The runtime role can bypass row level security",
    description="Superusers and BYPASSRLS roles ignore every policy; table owners can disable "
    "RLS; a member of such a role can SET ROLE to it. Any of these lets SQL on the app "
    "connection step out of isolation.",
    anti_pattern="ALTER ROLE app_user BYPASSRLS;  -- or: GRANT app_owner TO app_user;",
    best_practice="CREATE ROLE app_user LOGIN NOSUPERUSER NOBYPASSRLS;  -- owns nothing, member of nothing",
)


def check(ctx: AuditContext) -> Iterator[Finding]:
    row = ctx.role_row
    if row is None:
        yield Finding(
            RULE,
            f"role {ctx.runtime_role}",
            "the runtime role does not exist",
            severity=Severity.HIGH,
            fix_sql=None,
        )
        return
    report = role_report(row)
    for problem, fix in zip(report.problems, report.fixes, strict=False):
        if "persistent" in problem:  # reported by TGA112
            continue
        yield Finding(RULE, f"role {report.role}", problem, fix_sql=fix)
