"""TGP111 function-over-tenant-table: a SECURITY DEFINER function returns another tenant's data."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe

RULE = Rule(
    code="TGP111",
    name="function-over-tenant-table",
    severity=Severity.HIGH,
    tool="probe",
    summary="A SECURITY DEFINER function returns tenant B's data to tenant A",
    description="A SECURITY DEFINER function runs as its owner, who is usually exempt from "
    "the table's policies. The probe calls each one the runtime role may execute whose body "
    "names the table: without arguments under a tenant that owns nothing, or with tenant "
    "B's primary key under tenant A. Data coming back is a leak.",
    anti_pattern="CREATE FUNCTION app.invoice_total(bigint) RETURNS numeric SECURITY DEFINER\n"
    "  LANGUAGE sql AS $$ SELECT amount FROM app.invoices WHERE id = $1 $$;",
    best_practice="SECURITY INVOKER (the default), or filter on tenantguard.current_tenant() "
    "inside, with SET search_path pinned",
)


def _empty(value: object) -> bool:
    return value is None or value in (0, False, "", [], {})


def run(tp: TableProbe) -> Iterator[Finding]:
    pk = tp.meta.primary_key
    for fn in tp.meta.functions:
        key = f"function:{fn.signature}:{tp.table.label}"
        if key in tp.prober.seen:
            continue
        tp.prober.seen.add(key)
        ident = sql.Identifier(fn.schema, fn.name)
        if not fn.arg_types:
            call, params, tenant = sql.SQL("{}()").format(ident), [], tp.absent_tenant
            situation = f"tenant {tp.absent_tenant} (owns no rows) bound"
        elif len(pk) == 1 and fn.arg_types[0] == tp.meta.column(pk[0]).type:
            call = sql.SQL("{}(%s)").format(
                ident
            )  # an untyped literal: resolved like the app's call
            params, tenant = [tp.row_b.get(pk[0])], tp.tenant_a
            situation = f"tenant {tp.tenant_a} bound, called with tenant {tp.tenant_b}'s key"
        else:
            continue
        if fn.returns_set:
            query = sql.SQL("SELECT count(*) FROM {} AS f").format(call)
        else:
            query = sql.SQL("SELECT {}").format(call)
        outcome, evidence = tp.attempt(tenant, query, params)
        if not outcome.ok:
            continue
        value = outcome.scalar
        if (fn.returns_set and int(value or 0) > 0) or (not fn.returns_set and not _empty(value)):
            shown = f"{value} row(s)" if fn.returns_set else f"{str(value)[:60]!r}"
            yield tp.leak(
                RULE,
                f"{fn.signature} returned {shown} with {situation}",
                evidence,
                obj=f"function {fn.signature}",
                fix=f"ALTER FUNCTION {fn.signature} SECURITY INVOKER;  -- or filter on the tenant inside",
            )
