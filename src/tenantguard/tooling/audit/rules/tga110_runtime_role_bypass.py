"""TGA110 runtime-role-bypasses-rls: the runtime role (or a role it can become) skips RLS."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.core.rolecheck import CREATEROLE_GRANTS_ANY_BEFORE, role_report
from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA110",
    name="runtime-role-bypasses-rls",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="The runtime role can bypass row level security",
    description="Superusers and BYPASSRLS roles ignore every policy; table owners can disable "
    "RLS; a member of such a role can SET ROLE to it. CREATEROLE is as bad before "
    "PostgreSQL 16 (critical there): it can grant itself any non-superuser role, such as the "
    "tables' owner, and then run ALTER TABLE ... NO FORCE ROW LEVEL SECURITY; from 16 on it "
    "can only grant the roles it administers (high). Any of these lets SQL on the app "
    "connection step out of isolation.",
    anti_pattern="ALTER ROLE app_user BYPASSRLS;  -- or: GRANT app_owner TO app_user;\n"
    "ALTER ROLE app_user CREATEROLE;",
    best_practice="CREATE ROLE app_user LOGIN NOSUPERUSER NOBYPASSRLS;  -- owns nothing, member of nothing",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    row = ctx.role_row
    if row is None:  # audit_database checks that the role exists first
        return
    report = role_report(row)
    for kind, problem, fix in zip(report.kinds, report.problems, report.fixes, strict=True):
        if kind in ("setting_default", "member_of_server_access"):  # TGA112, TGA111
            continue
        severity = None
        if kind in ("createrole", "member_of_createrole"):
            old = ctx.server_version_num < CREATEROLE_GRANTS_ANY_BEFORE
            severity = Severity.CRITICAL if old else Severity.HIGH
            if not old:
                problem += (
                    " (rated high, not critical: from PostgreSQL 16 CREATEROLE no longer "
                    "grants roles it does not administer)"
                )
        yield Finding(RULE, f"role {report.role}", problem, severity=severity, fix_sql=fix)
