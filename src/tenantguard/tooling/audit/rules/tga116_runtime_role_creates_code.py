"""TGA116 runtime-role-creates-code: SQL on the app connection can leave code behind."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.core.rolecheck import code_report
from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA116",
    name="runtime-role-creates-code",
    severity=Severity.HIGH,
    tool="audit",
    summary="The runtime role can create temporary objects, schemas or functions",
    description="Every database grants TEMPORARY to PUBLIC, and pg_temp is searched first for "
    "relations and types. SQL on one request's pooled connection (an injection, a bug) can "
    "leave a temporary view named like an application table, or a domain named like a "
    "built-in type whose CHECK calls a temporary function, or replace a prepared statement "
    "from a function: that code then runs inside the next tenant's statements on the same "
    "connection, with the next tenant bound, and can copy its rows where the first tenant "
    "reads them later. CREATE on the database or on a schema gives persistent functions "
    "whose bodies no statement check can see. Privileges of every role the runtime role is a "
    "member of count, NOINHERIT memberships included: SET LOCAL ROLE reaches them. A runtime "
    "role needs none of these (tenantguard's pools refuse such a login unless allow_temp=True).",
    anti_pattern="-- the default: GRANT TEMPORARY ON DATABASE app TO PUBLIC\n"
    "GRANT CREATE ON SCHEMA public TO app_user;",
    best_practice="REVOKE TEMPORARY ON DATABASE app FROM PUBLIC;  -- tenantguard install does\n"
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC, app_user;",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    row = ctx.role_row
    if row is None:  # audit_database checks that the role exists first
        return
    report = code_report(row)
    for problem, fix in zip(report.problems, report.fixes, strict=True):
        yield Finding(RULE, f"role {report.role}", problem, fix_sql=fix)
