"""TGA127 signing-key-reachable: the runtime role can read or write the signing keys."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.audit.rules._signing import signing_of
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA127",
    name="signing-key-reachable",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="The runtime role can read or write the signing key table",
    description="Signed contexts are only as strong as the key. If the app's login can "
    "read tenantguard_keys.signing_keys (a grant, a membership in the key owner, owning "
    "it) it can sign a context for any tenant; if it can write it, it can add a key of "
    "its own. A key owner that can log in is a second way in.",
    anti_pattern="GRANT SELECT ON tenantguard_keys.signing_keys TO app_user;",
    best_practice="REVOKE ALL ON tenantguard_keys.signing_keys FROM app_user, PUBLIC;",
)

_QUERY = """
SELECT pg_catalog.pg_get_userbyid(c.relowner)::text,
       o.rolcanlogin,
       pg_catalog.pg_has_role(%(role)s, c.relowner, 'USAGE'),
       ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
             WHERE pg_catalog.has_table_privilege(%(role)s, c.oid, p)
                OR (p IN ('SELECT', 'INSERT', 'UPDATE')
                    AND pg_catalog.has_any_column_privilege(%(role)s, c.oid, p)))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
WHERE c.oid = pg_catalog.to_regclass(%(table)s)
"""


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    signing = signing_of(ctx)
    if signing is None:
        return
    row = ctx.conn.execute(_QUERY, {"role": ctx.runtime_role, "table": signing.table}).fetchone()
    if row is None:
        yield Finding(
            RULE,
            f"table {signing.table}",
            "the verifying view exists but its key table does not: signing cannot be checked",
            fix_sql="-- tenantguard install ... --signed",
        )
        return
    owner, owner_logs_in, runtime_is_owner, privileges = row
    role = sql.Identifier(ctx.runtime_role).as_string(ctx.conn)
    if runtime_is_owner:
        yield Finding(
            RULE,
            f"role {ctx.runtime_role}",
            f"is (or can act as) the key owner {owner!r}: it can read and add keys",
            fix_sql=f"REVOKE {sql.Identifier(owner).as_string(ctx.conn)} FROM {role};",
        )
    elif privileges:
        yield Finding(
            RULE,
            f"table {signing.table}",
            f"the runtime role {ctx.runtime_role!r} has {', '.join(privileges)} on the key table",
            fix_sql=f"REVOKE ALL ON {signing.table} FROM {role}, PUBLIC;",
        )
    if owner_logs_in:
        yield Finding(
            RULE,
            f"role {owner}",
            "the key owner can log in: its password is a way to every tenant's key",
            fix_sql=f"ALTER ROLE {sql.Identifier(owner).as_string(ctx.conn)} NOLOGIN;",
        )
