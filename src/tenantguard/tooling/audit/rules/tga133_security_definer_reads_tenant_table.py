"""TGA133 security-definer-reads-tenant-table: a SECURITY DEFINER function reads a tenant
table as an owner that row level security does not apply to."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import relations_in

RULE = Rule(
    code="TGA133",
    name="security-definer-reads-tenant-table",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="SECURITY DEFINER function reads a tenant table with row level security bypassed",
    description="A SECURITY DEFINER function runs as its owner. If the owner is a superuser or "
    "BYPASSRLS role, or owns the table and the table is not FORCEd, no policy applies inside "
    "the function: its own WHERE clause is the only isolation, and any caller the runtime "
    "role can act as reads (or changes) every tenant's rows through it. Bodies are parsed with "
    "PostgreSQL's grammar (LANGUAGE sql) and the PL/pgSQL parser; dynamic SQL (EXECUTE) and "
    "other languages are TGA135.",
    anti_pattern="CREATE FUNCTION app.invoice_total(i bigint) RETURNS numeric\n"
    "  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog\n"
    "  AS $$ SELECT amount FROM app.invoices WHERE id = i $$;  -- owned by postgres",
    best_practice="ALTER FUNCTION app.invoice_total(bigint) SECURITY INVOKER;\n"
    "-- or: owner subject to RLS (NOSUPERUSER NOBYPASSRLS) and FORCE ROW LEVEL SECURITY",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for f in ctx.functions:
        if not f.security_definer or not f.executable or not f.statements:
            continue
        reasons: list[str] = []
        for schema, name in relations_in(f.statements):
            for t in ctx.tables_named(schema, name, f.lookup_path(ctx.session_schemas)):
                why = ctx.definer_bypass(f, t) if t.rls else None  # RLS off: TGA101
                if why:
                    reasons.append(f"{t.label} ({why})")
        if reasons:
            yield Finding(
                RULE,
                f"function {f.signature}",
                f"executable by {ctx.runtime_role!r}, reads {'; '.join(reasons)}",
                fix_sql=sql.SQL("ALTER FUNCTION {} SECURITY INVOKER;").format(f.ident).as_string()
                + "\n-- or give it an owner that is NOSUPERUSER NOBYPASSRLS and FORCE ROW LEVEL "
                "SECURITY on the tables it reads",
            )
