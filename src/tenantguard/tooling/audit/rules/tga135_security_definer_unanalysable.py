"""TGA135 security-definer-unanalysable: a SECURITY DEFINER function the audit cannot read,
running as an owner that row level security does not apply to."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext, sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA135",
    name="security-definer-unanalysable",
    severity=Severity.HIGH,
    tool="audit",
    summary="SECURITY DEFINER function the audit cannot analyse, owned by a role that bypasses RLS",
    description="TGA133 and TGA134 read function bodies with PostgreSQL's grammar and the "
    "PL/pgSQL parser. A body that builds SQL at run time (EXECUTE, FOR ... IN EXECUTE, RETURN "
    "QUERY EXECUTE), or is written in another language (plpython, plperl, C ...), cannot be "
    "read that way. When it runs as an owner RLS does not apply to (superuser, BYPASSRLS, or "
    "owner of a tenant table that is not FORCEd) and the runtime role can call it, nothing "
    "proves it does not read other tenants' rows or set the tenant setting.",
    anti_pattern="CREATE FUNCTION app.count_rows(t text) RETURNS bigint LANGUAGE plpgsql\n"
    "  SECURITY DEFINER SET search_path = pg_catalog\n"
    "  AS $$ DECLARE n bigint; BEGIN EXECUTE format('SELECT count(*) FROM app.%I', t) INTO n;"
    " RETURN n; END $$;  -- owned by postgres",
    best_practice="ALTER FUNCTION app.count_rows(text) SECURITY INVOKER;\n"
    "-- or: an owner that is NOSUPERUSER NOBYPASSRLS, tables FORCE ROW LEVEL SECURITY",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for f in ctx.functions:
        if not f.security_definer or not f.executable:
            continue
        unreadable = f.unanalysable
        if unreadable is None:
            continue
        why = ctx.owner_bypass(f.owner, f.owner_bypasses)
        if why is None:
            continue
        yield Finding(
            RULE,
            f"function {f.signature}",
            f"executable by {ctx.runtime_role!r} and runs as {f.owner!r} ({why}); "
            f"{unreadable}, so the audit cannot prove it does not read tenant tables or set "
            f"{ctx.setting}",
            fix_sql=sql_comment("either make it run as the caller, or stop the app calling it:")
            + "\n"
            + sql.SQL("ALTER FUNCTION {} SECURITY INVOKER;").format(f.ident).as_string(ctx.conn)
            + "\n"
            + sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC, {};")
            .format(f.ident, sql.Identifier(ctx.runtime_role))
            .as_string(ctx.conn),
        )
