"""TGA180 covert-channels: LISTEN/NOTIFY and advisory locks shared across tenants."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.catalog import FUNCTION_EXCLUDED_SCHEMAS, AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA180",
    name="covert-channels",
    severity=Severity.LOW,
    tool="audit",
    summary="Functions use NOTIFY or advisory locks (channels RLS does not cover)",
    description="Channel names and advisory lock keys are database-wide: a tenant can listen on "
    "another tenant's channel or probe its locks unless names and keys include the tenant.",
    anti_pattern="PERFORM pg_notify('invoices', row.id::text);",
    best_practice="PERFORM pg_notify('invoices_' || row.tenant_id, row.id::text);",
)


def check(ctx: AuditContext) -> Iterator[Finding]:
    rows = ctx.fetch(
        "SELECT p.oid::regprocedure::text, "
        "ARRAY(SELECT w FROM unnest(ARRAY['pg_notify','pg_advisory_lock','pg_try_advisory_lock',"
        "'pg_advisory_xact_lock']) w WHERE position(w IN lower(p.prosrc)) > 0) "
        "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%' AND p.prolang <> 13 "
        "AND p.prosrc ~* '(pg_notify|advisory)' ORDER BY 1",
        (list(FUNCTION_EXCLUDED_SCHEMAS),),
    )
    for fn, uses in rows:
        if uses:
            yield Finding(
                RULE,
                f"function {fn}",
                f"uses {', '.join(uses)}; make channel names / lock keys tenant-specific",
            )
