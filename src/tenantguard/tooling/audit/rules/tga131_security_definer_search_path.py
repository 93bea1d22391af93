"""TGA131 security-definer-search-path: SECURITY DEFINER without a pinned search_path."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA131",
    name="security-definer-search-path",
    severity=Severity.MEDIUM,
    tool="audit",
    summary="SECURITY DEFINER function without SET search_path",
    description="A SECURITY DEFINER function runs with its owner's rights; without a pinned "
    "search_path the caller can shadow the objects it uses (temp schema, own schema) and run "
    "code as the owner. High when the owner bypasses RLS (superuser, BYPASSRLS, or owner of a "
    "tenant table that is not FORCEd) and the runtime role can execute it; medium otherwise.",
    anti_pattern="CREATE FUNCTION app.f() ... SECURITY DEFINER AS $$ ... $$;",
    best_practice="CREATE FUNCTION app.f() ... SECURITY DEFINER SET search_path = pg_catalog, app ...",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for f in ctx.functions:
        if not f.security_definer or f.search_path is not None:
            continue
        why = ctx.owner_bypass(f.owner, f.owner_bypasses)
        high = why is not None and f.executable
        yield Finding(
            RULE,
            f"function {f.signature}",
            f"SECURITY DEFINER (runs as {f.owner!r}) with the caller's search_path"
            + (f"; {why} and {ctx.runtime_role!r} can execute it: rated high" if high else ""),
            severity=Severity.HIGH if high else None,
            fix_sql=sql.SQL("ALTER FUNCTION {} SET search_path = pg_catalog, pg_temp;")
            .format(f.ident)
            .as_string(ctx.conn),
        )
