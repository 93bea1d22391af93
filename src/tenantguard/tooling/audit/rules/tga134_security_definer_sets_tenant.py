"""TGA134 security-definer-sets-tenant: a SECURITY DEFINER function changes the tenant
setting."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import setting_changes

RULE = Rule(
    code="TGA134",
    name="security-definer-sets-tenant",
    severity=Severity.HIGH,
    tool="audit",
    summary="SECURITY DEFINER function changes the tenant setting",
    description="A function the runtime role can call that sets the tenant setting (SET, "
    "set_config, or a SET clause on the function) is a tenant switch in trusted server code: "
    "whoever calls it chooses the tenant the following statements run as, and with a "
    "session-level change the pooled connection carries that tenant into the next request "
    "(the checkin guard classifies the statements the app sends, not what functions do inside). "
    "Bodies are parsed with PostgreSQL's grammar and the PL/pgSQL parser.",
    anti_pattern="CREATE FUNCTION app.switch_tenant(t bigint) RETURNS void\n"
    "  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog\n"
    "  AS $$ BEGIN PERFORM set_config('app.tenant_id', t::text, false); END $$;",
    best_practice="-- bind the tenant only from the application, per transaction:\n"
    "SELECT set_config('app.tenant_id', $1, true);  -- tenantguard does this for you",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for f in ctx.functions:
        if not f.security_definer or not f.executable:
            continue
        how = setting_changes(f.statements or [], ctx.setting)
        how += [
            f"SET {ctx.setting} on the function"
            for item in f.config
            if item.partition("=")[0] == ctx.setting
        ]
        if how:
            yield Finding(
                RULE,
                f"function {f.signature}",
                f"executable by {ctx.runtime_role!r}, changes {ctx.setting} "
                f"({', '.join(dict.fromkeys(how))})",
                fix_sql=sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC, {};")
                .format(f.ident, sql.Identifier(ctx.runtime_role))
                .as_string()
                + "  -- or drop the tenant switch from it",
            )
