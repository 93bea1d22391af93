"""TGP111 function-over-tenant-table: a SECURITY DEFINER function returns another tenant's data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from psycopg import sql

from tenantguard.tooling.catalog import FunctionOver
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP111",
    name="function-over-tenant-table",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="A SECURITY DEFINER function returns tenant B's data to tenant A",
    description="A SECURITY DEFINER function runs as its owner, who is usually exempt from "
    "the table's policies. The probe calls each one the runtime role may execute that reads "
    "the table: with no argument, or with tenant B's primary key or tenant id. When tenant A "
    "gets the same non-empty answer as tenant B (and, without arguments, as a tenant that "
    "owns nothing), the function does not depend on who asks. VOLATILE functions are called "
    "only with --call-volatile-functions: a rollback cannot undo what they do outside the "
    "database.",
    anti_pattern="CREATE FUNCTION app.invoice_total(bigint) RETURNS numeric SECURITY DEFINER\n"
    "  LANGUAGE sql AS $$ SELECT amount FROM app.invoices WHERE id = $1 $$;",
    best_practice="SECURITY INVOKER (the default), or filter on tenantguard.current_tenant() "
    "inside, with SET search_path pinned",
)


def _call(tp: TableProbe, fn: FunctionOver, tenant: str, args: list[Any]) -> tuple[Any, str] | None:
    ident = sql.Identifier(fn.schema, fn.name)
    # Untyped literals: resolved the way the application's own call would be.
    call = sql.SQL("{}({})").format(ident, sql.SQL(", ").join(sql.Placeholder() * len(args)))
    if fn.returns_set:
        template = "SELECT md5(string_agg(f::text, ',' ORDER BY f::text)), count(*) FROM {} f"
    else:
        template = "SELECT r::text, CASE WHEN r IS NULL THEN 0 ELSE 1 END FROM {} r"
    query = sql.SQL(template).format(call)
    outcome, evidence = tp.attempt(tenant, query, args)
    if not outcome.ok or not outcome.rows:
        return None
    digest, n = outcome.rows[0]
    empty = not n or (not fn.returns_set and digest in ("", "0", "false", "{}", "[]"))
    return (None if empty else digest), evidence


def _argument_sets(tp: TableProbe, fn: FunctionOver) -> list[tuple[str, list[Any]]]:
    if not fn.arg_types:
        return [("no arguments", [])]
    if len(fn.arg_types) > 1:
        return []
    out = []
    pk = tp.meta.primary_key
    if len(pk) == 1 and fn.arg_types[0] == tp.meta.column(pk[0]).type:
        out.append((f"tenant {tp.tenant_b}'s key", [tp.row_b.get(pk[0])]))
    if fn.arg_types[0] == tp.meta.column(tp.table.tenant_column).type:
        out.append((f"tenant {tp.tenant_b}'s id", [tp.tenant_b]))
    return out


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    for fn in tp.meta.functions:
        key = f"function:{fn.signature}:{tp.table.label}"
        if key in tp.prober.seen:
            continue
        tp.prober.seen.add(key)
        if fn.volatile and not tp.prober.call_volatile:
            tp.note(
                f"function {fn.signature}",
                "VOLATILE: not called (pass --call-volatile-functions to call it inside the "
                "rolled-back transaction)",
                Severity.LOW,
            )
            continue
        arg_sets = _argument_sets(tp, fn)
        if not arg_sets:
            tp.note(
                f"function {fn.signature}",
                "its arguments cannot be derived from a row; call it by hand as two tenants",
                Severity.LOW,
            )
        for what, args in arg_sets:
            as_a = _call(tp, fn, tp.tenant_a, args)
            as_b = _call(tp, fn, tp.tenant_b, args)
            if as_a is None or as_b is None or as_a[0] is None or as_a[0] != as_b[0]:
                continue
            if not args:  # also the same for a tenant that owns nothing: ignores the caller
                absent = _call(tp, fn, tp.absent_tenant, args)
                if absent is None or absent[0] != as_a[0]:
                    continue
            yield tp.leak(
                RULE,
                f"{fn.signature} returned tenant {tp.tenant_b}'s answer to tenant {tp.tenant_a} "
                f"(called with {what})",
                as_a[1],
                obj=f"function {fn.signature}",
                fix=f"ALTER FUNCTION {fn.signature} SECURITY INVOKER;  -- or filter on the tenant inside",
            )
            break
