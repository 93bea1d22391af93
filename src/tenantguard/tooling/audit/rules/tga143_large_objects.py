"""TGA143 large-objects: large objects have no row level security."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA143",
    name="large-objects",
    severity=Severity.HIGH,
    tool="audit",
    summary="Large objects exist or are shared: pg_largeobject has no row level security",
    description="Large objects live in pg_largeobject, which no policy can cover, and their ids "
    "are listed in pg_largeobject_metadata for every role to see. Every large object the app "
    "connection creates is owned by the runtime role, so every tenant can lo_get() every other "
    "tenant's objects; objects granted to the runtime role or PUBLIC, or any object at all with "
    "lo_compat_privileges on, are the same. Objects the runtime role cannot read yet are one "
    "GRANT away (medium).",
    anti_pattern="SELECT lo_from_bytea(0, 'invoice.pdf bytes');  -- on the app connection",
    best_practice="-- store the bytes in a bytea column of an RLS-protected tenant table:\n"
    "ALTER TABLE app.documents ADD COLUMN body bytea;",
)

# Per owner: how many objects the runtime role can read through ownership (or
# membership of the owner), through a grant (to it, a role it is in, or PUBLIC), or not.
_OBJECTS = """
SELECT pg_catalog.pg_get_userbyid(m.lomowner)::text,
       CASE WHEN pg_catalog.pg_has_role(%(role)s, m.lomowner, 'MEMBER') THEN 'owned'
            WHEN EXISTS (SELECT 1 FROM pg_catalog.aclexplode(m.lomacl) a
                         WHERE a.privilege_type IN ('SELECT', 'UPDATE')
                           AND (a.grantee = 0
                                OR pg_catalog.pg_has_role(%(role)s, a.grantee, 'MEMBER')))
            THEN 'granted' ELSE 'none' END AS access,
       count(*)::int, (array_agg(m.oid::bigint ORDER BY m.oid))[1:3]
FROM pg_catalog.pg_largeobject_metadata m
GROUP BY 1, 2 ORDER BY 1, 2
"""
# lo_compat_privileges: this session, and persistent role/database defaults that reach
# the runtime role's sessions.
_COMPAT = """
SELECT 'server', current_setting('lo_compat_privileges')
UNION ALL
SELECT CASE WHEN s.setrole = 0 THEN 'database' ELSE 'role' END, split_part(cfg, '=', 2)
FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS cfg
WHERE split_part(cfg, '=', 1) = 'lo_compat_privileges'
  AND (s.setrole = 0 OR s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(role)s))
  AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                            WHERE datname = current_database()))
"""
_ON = ("on", "true", "yes", "1")


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    compat = [lvl for lvl, value in ctx.fetch(_COMPAT, {"role": ctx.runtime_role}) if value in _ON]
    rows = ctx.fetch(_OBJECTS, {"role": ctx.runtime_role})
    total = sum(r[2] for r in rows)
    if compat:
        yield Finding(
            RULE,
            "setting lo_compat_privileges",
            f"on ({', '.join(compat)} level): every role reads and writes every large object "
            f"({total} exist)",
            severity=Severity.CRITICAL if total else None,
            fix_sql="ALTER SYSTEM SET lo_compat_privileges = off;  SELECT pg_reload_conf();\n"
            "-- and ALTER ROLE/DATABASE ... RESET lo_compat_privileges",
        )
    for owner, access, count, sample in rows:
        ids = ", ".join(map(str, sample)) + (", ..." if count > len(sample) else "")
        if access == "none" and compat:
            continue  # reported above
        if access == "owned":
            msg = (
                f"{count} large object(s) owned by {owner!r} (ids {ids}): the runtime role "
                f"{ctx.runtime_role!r} can read and write them whichever tenant is bound"
            )
            sev = None
        elif access == "granted":
            msg = (
                f"{count} large object(s) of {owner!r} (ids {ids}) granted to the runtime role "
                "or PUBLIC: readable by every tenant"
            )
            sev = None
        else:
            msg = (
                f"{count} large object(s) of {owner!r} (ids {ids}) exist outside row level "
                "security; the runtime role cannot read them, but one grant exposes them to "
                "every tenant"
            )
            sev = Severity.MEDIUM
        yield Finding(
            RULE,
            f"large objects of {owner}",
            msg,
            severity=sev,
            fix_sql="-- move the bytes into a bytea column of an RLS-protected tenant table, then:\n"
            + sql.SQL(
                "SELECT lo_unlink(oid) FROM pg_largeobject_metadata "
                "WHERE pg_get_userbyid(lomowner) = {};"
            )
            .format(sql.Literal(owner))
            .as_string(),
        )
