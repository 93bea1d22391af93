"""TGA113 runtime-role-owns-tenant-schema: the runtime role owns (or may create in) a schema
that holds tenant tables."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext, sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA113",
    name="runtime-role-owns-tenant-schema",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="The runtime role owns, or can create objects in, a schema holding tenant tables",
    description="The owner of a schema can DROP every table in it, whoever owns the table: SQL "
    "on the app connection destroys every tenant's data, or drops a table and creates an "
    "unprotected one in its place. Membership in the owner counts (owning the database makes "
    "a role a member of pg_database_owner, which owns the public schema from PostgreSQL 15 "
    "on). CREATE on such a schema (medium) lets it add objects next to the tenant tables that "
    "shadow functions, operators or tables other code finds through search_path.",
    anti_pattern="ALTER SCHEMA app OWNER TO app_user;  -- or: GRANT CREATE ON SCHEMA app TO app_user;",
    best_practice="ALTER SCHEMA app OWNER TO app_owner;  -- NOLOGIN; app_user gets USAGE only",
)

_QUERY = """
SELECT n.nspname::text, pg_catalog.pg_get_userbyid(n.nspowner)::text,
       pg_catalog.pg_has_role(%(role)s, n.nspowner, 'MEMBER'),
       pg_catalog.has_schema_privilege(%(role)s, n.oid, 'CREATE'),
       EXISTS (SELECT 1 FROM pg_catalog.aclexplode(n.nspacl) a
               WHERE a.grantee = 0 AND a.privilege_type = 'CREATE')
FROM pg_catalog.pg_namespace n
WHERE n.nspname = ANY(%(schemas)s)
ORDER BY 1
"""


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    schemas = sorted({t.name.schema for t in (*ctx.tables, *ctx.foreign_tables)})
    if not schemas:
        return
    app = sql.Identifier(ctx.runtime_role).as_string(ctx.conn)
    for schema, owner, owns, create, public_create in ctx.fetch(
        _QUERY, {"role": ctx.runtime_role, "schemas": schemas}
    ):
        ident = sql.Identifier(schema).as_string(ctx.conn)
        if owns:
            if owner == ctx.runtime_role:
                how = "owns it"
                fix = _give_to_table_owner(ctx, schema, sql.SQL("SCHEMA {}"), (schema,))
            elif owner == "pg_database_owner":
                how = f"owns the database, so it is a member of {owner!r}, which owns it"
                fix = _give_to_table_owner(ctx, schema, sql.SQL("DATABASE {}"), (ctx.database,))
            else:
                how = f"is a member of {owner!r}, which owns it"
                fix = (
                    sql.SQL("REVOKE {} FROM {};")
                    .format(sql.Identifier(owner), sql.Identifier(ctx.runtime_role))
                    .as_string(ctx.conn)
                )
            yield Finding(
                RULE,
                f"schema {schema}",
                f"{ctx.runtime_role!r} {how}: it can DROP the tenant tables in it (every "
                "tenant's data) or replace them with unprotected ones",
                fix_sql=fix,
            )
        elif create:
            fixes = [f"REVOKE CREATE ON SCHEMA {ident} FROM {app};"]
            if public_create:
                fixes.insert(0, f"REVOKE CREATE ON SCHEMA {ident} FROM PUBLIC;")
            yield Finding(
                RULE,
                f"schema {schema}",
                f"{ctx.runtime_role!r} has CREATE on it"
                + (" (granted to PUBLIC)" if public_create else "")
                + ": it can add objects next to the tenant tables that shadow what other "
                "code finds through search_path (rated medium, not critical: it does not own "
                "the schema, and its objects run only where someone's search_path finds them)",
                severity=Severity.MEDIUM,
                fix_sql="\n".join(fixes),
            )


def _give_to_table_owner(
    ctx: AuditContext, schema: str, what: sql.SQL, name: tuple[str, ...]
) -> str:
    """``ALTER <what> OWNER TO`` the role that owns most tenant tables in *schema*, of those
    the runtime role is not a member of; a comment when there is none (a person chooses)."""
    owners: dict[str, int] = {}
    for t in (*ctx.tables, *ctx.foreign_tables):
        if t.name.schema == schema and t.owner != ctx.runtime_role:
            owners[t.owner] = owners.get(t.owner, 0) + 1
    candidates = sorted(owners, key=lambda o: (-owners[o], o))
    member = {
        role
        for role, is_member in ctx.fetch(
            "SELECT r, pg_catalog.pg_has_role(%s, r, 'MEMBER') FROM unnest(%s::text[]) r",
            (ctx.runtime_role, candidates),
        )
        if is_member
    }
    chosen = next((o for o in candidates if o not in member), None)
    target = sql.Identifier(*name)
    if chosen is None:
        return sql_comment(
            f"a decision for a person: no tenant table in {schema!r} is owned by a role that "
            f"{ctx.runtime_role!r} is not a member of; create one (NOLOGIN) and run\n"
            + sql.SQL("ALTER {} OWNER TO ").format(what.format(target)).as_string(ctx.conn)
            + "that_role;"
        )
    return (
        sql.SQL("ALTER {} OWNER TO {};  -- the owner of its tenant tables")
        .format(what.format(target), sql.Identifier(chosen))
        .as_string(ctx.conn)
    )
