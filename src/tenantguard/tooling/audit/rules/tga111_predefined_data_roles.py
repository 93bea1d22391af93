"""TGA111 predefined-data-roles: the runtime role reads or writes all data by role."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.core.rolecheck import SERVER_ACCESS_ROLES
from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA111",
    name="predefined-data-roles",
    severity=Severity.HIGH,
    tool="audit",
    summary="The runtime role is a member of pg_read_all_data / pg_write_all_data",
    description="These predefined roles grant access to every table, including copies, logs "
    "and any table without RLS (tenantguard's signing keys among them); they also survive new "
    "tables being added without grants. pg_execute_server_program and pg_*_server_files reach "
    "the server's programs and files (its write-ahead log holds every tenant's rows): critical. "
    "tenantguard's pools refuse a login in any of them except pg_maintain.",
    anti_pattern="GRANT pg_read_all_data TO app_user;",
    best_practice="REVOKE pg_read_all_data FROM app_user;  -- grant per table instead",
)

_ROLES = (
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_maintain",
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    rows = ctx.fetch(
        "SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE r.rolname = ANY(%s) "
        "AND pg_catalog.pg_has_role(%s, r.oid, 'MEMBER') ORDER BY 1",
        (list(_ROLES), ctx.runtime_role),
    )
    for (role,) in rows:
        yield Finding(
            RULE,
            f"role {ctx.runtime_role}",
            f"member of {role}"
            + (
                ": the server's programs and files, as good as a superuser"
                if role in SERVER_ACCESS_ROLES
                else ""
            ),
            severity=Severity.CRITICAL if role in SERVER_ACCESS_ROLES else None,
            fix_sql=sql.SQL("REVOKE {} FROM {};")
            .format(sql.Identifier(role), sql.Identifier(ctx.runtime_role))
            .as_string(),
        )
