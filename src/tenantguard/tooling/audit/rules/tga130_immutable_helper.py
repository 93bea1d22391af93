"""TGA130 immutable-policy-helper: a policy calls an IMMUTABLE user function."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import func_names

RULE = Rule(
    code="TGA130",
    name="immutable-policy-helper",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="A policy helper is IMMUTABLE (it can be folded into a cached plan)",
    description="The planner may evaluate an IMMUTABLE function once and keep the result in a "
    "cached generic plan; a helper that reads the tenant setting then returns the previous "
    "tenant on the same connection.",
    anti_pattern="CREATE FUNCTION app.tenant() RETURNS bigint LANGUAGE sql IMMUTABLE\n"
    "  AS $$ SELECT current_setting('app.tenant_id')::bigint $$;",
    best_practice="... LANGUAGE sql STABLE ...",
)

_QUERY = """
SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.proname = %(name)s AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.provolatile = 'i'
"""


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    seen: set[str] = set()
    for t in ctx.tables:
        for p in t.policies:
            for schema, name in func_names(p.qual) + func_names(p.with_check):
                for (fn,) in ctx.fetch(_QUERY, {"name": name, "schema": schema}):
                    if fn in seen:
                        continue
                    seen.add(fn)
                    yield Finding(
                        RULE,
                        f"function {fn}",
                        f"IMMUTABLE, called by {p.name} on {t.label}",
                        fix_sql=f"ALTER FUNCTION {fn} STABLE;",
                    )
