"""TGA131 security-definer-search-path: SECURITY DEFINER without a pinned search_path."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.catalog import FUNCTION_EXCLUDED_SCHEMAS, AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA131",
    name="security-definer-search-path",
    severity=Severity.MEDIUM,
    tool="audit",
    summary="SECURITY DEFINER function without SET search_path",
    description="A SECURITY DEFINER function runs with its owner's rights; without a pinned "
    "search_path the caller can shadow the objects it uses (temp schema, own schema) and run "
    "code as the owner, who may bypass RLS.",
    anti_pattern="CREATE FUNCTION app.f() ... SECURITY DEFINER AS $$ ... $$;",
    best_practice="CREATE FUNCTION app.f() ... SECURITY DEFINER SET search_path = pg_catalog, app ...",
)


def check(ctx: AuditContext) -> Iterator[Finding]:
    rows = ctx.fetch(
        "SELECT p.oid::regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner)::text "
        "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "WHERE p.prosecdef AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%' "
        "AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) c "
        "                WHERE c LIKE 'search\\_path=%%') ORDER BY 1",
        (list(FUNCTION_EXCLUDED_SCHEMAS),),
    )
    for fn, owner in rows:
        yield Finding(
            RULE,
            f"function {fn}",
            f"SECURITY DEFINER (runs as {owner!r}) with the caller's search_path",
            fix_sql=f"ALTER FUNCTION {fn} SET search_path = pg_catalog, pg_temp;",
        )
