"""TGA120 fail-open-policy: rows are visible when the tenant setting is empty or unset."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from psycopg import sql

from tenantguard.tooling._escalation import foreign_code
from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.audit.rules.tga190_check_not_run import not_run
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA120",
    name="fail-open-policy",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="Policies let rows through when no tenant is bound",
    description="A predicate such as current_setting('app.tenant_id', true) IS NULL OR ... "
    "or coalesce(...) is true when the setting is missing or empty, so a code path that "
    "forgets to bind a tenant sees every tenant. Checked by running the query as the "
    "runtime role with the setting empty, inside a transaction that is rolled back.",
    anti_pattern="CREATE POLICY p ON app.t USING (\n"
    "  current_setting('app.tenant_id', true) IS NULL\n"
    "  OR tenant_id = current_setting('app.tenant_id', true)::bigint);",
    best_practice="USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))"
    "  -- raises when unset",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        if not t.rls or "SELECT" not in t.privileges:
            continue
        if ctx.access is None or not ctx.access.available:
            why = ctx.access.needs if ctx.access is not None else "no runtime access"
            yield not_run(ctx, RULE.code, t.label, why)
            continue
        if ctx.access.method != "app-dsn":
            risky = foreign_code(ctx.conn, t.oid, ctx.setting, ctx.user_setting)
            if risky:
                fn, owner, where = risky[0]
                yield not_run(
                    ctx,
                    RULE.code,
                    t.label,
                    f"{fn}, owned by {owner!r} and run by {where}, would run in the audit's "
                    "session, where it could RESET ROLE to the administrator: pass --app-dsn "
                    "(the runtime role's own login) to run this check there",
                )
                continue
        try:
            with ctx.access.session(ctx.conn) as conn:
                conn.execute("SELECT pg_catalog.set_config(%s, '', true)", (ctx.setting,))
                row = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(t.name.ident)
                ).fetchone()
        except psycopg.Error:
            continue  # an error with no tenant bound is exactly fail-closed
        visible = int(row[0]) if row else 0
        if visible > 0:
            yield Finding(
                RULE,
                t.label,
                f"{visible} row(s) visible to {ctx.runtime_role!r} with {ctx.setting} empty",
                fix_sql=t.protect_sql(),
                evidence=sql.SQL(
                    "SET ROLE {}; SELECT set_config({}, '', true); SELECT count(*) FROM {};"
                )
                .format(sql.Identifier(ctx.runtime_role), sql.Literal(ctx.setting), t.name.ident)
                .as_string(ctx.conn)
                + f"  -- {visible}",
            )
