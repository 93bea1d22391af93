"""TGA181 shared-login-activity: every tenant's statements are visible to the login."""

from __future__ import annotations

from collections.abc import Iterator
from typing import LiteralString

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA181",
    name="shared-login-activity",
    severity=Severity.LOW,
    tool="audit",
    summary="All tenants share one login whose sessions can read each other's statements",
    description="pg_stat_activity shows every session's current statement to sessions of the "
    "same role. With one runtime login for all tenants, SQL on one tenant's lease can read "
    "what the other leases are running right now, with the literal values when application "
    "code inlines them into the SQL text. Bound parameters ($1) keep values out of the text "
    "(tenantguard binds the tenant that way); per-tenant logins (tenantguard credentials) or "
    "track_activities = off for the runtime role remove the channel.",
    anti_pattern="-- one login for every tenant, statements with inlined values:\n"
    "SELECT * FROM invoices WHERE customer_email = 'ceo@tenant-b.example';",
    best_practice="-- values as bound parameters, and (as a superuser):\n"
    "ALTER ROLE app_user SET track_activities = off;",
)

# Whether the runtime role's sessions record their statements: a role or database
# default for track_activities, else the server's value.
_TRACKED: LiteralString = """
SELECT coalesce(
    (SELECT split_part(cfg, '=', 2)
     FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS cfg
     JOIN pg_catalog.pg_roles r ON true
     WHERE r.rolname = %(role)s
       AND s.setrole IN (r.oid, 0)
       AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                 WHERE datname = pg_catalog.current_database()))
       AND split_part(cfg, '=', 1) = 'track_activities'
     ORDER BY s.setrole DESC, s.setdatabase DESC LIMIT 1),
    pg_catalog.current_setting('track_activities')),
    (SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = %(role)s)
"""


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    row = ctx.conn.execute(_TRACKED, {"role": ctx.runtime_role}).fetchone()
    if row is None:
        return
    tracked, can_login = row
    if not can_login or str(tracked).lower() in ("off", "false", "0", "no"):
        return
    role = sql.Identifier(ctx.runtime_role).as_string()
    yield Finding(
        RULE,
        f"role {role}",
        "every tenant's requests log in as this role with track_activities on: a session "
        "can read the others' current statements in pg_stat_activity",
        fix_sql=f"ALTER ROLE {role} SET track_activities = off;  -- as a superuser; or "
        "per-tenant logins: tenantguard credentials",
    )
