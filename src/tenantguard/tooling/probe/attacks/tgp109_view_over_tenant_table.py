"""TGP109 view-over-tenant-table: a view or materialized view shows other tenants' rows."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe

RULE = Rule(
    code="TGP109",
    name="view-over-tenant-table",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="A view or materialized view over a tenant table returns other tenants' rows",
    description="A view runs with its owner's rights unless it has security_invoker, and a "
    "materialized view is a copy with no policies at all. The probe queries each one the "
    "runtime role can read: with tenant A bound it must show no other tenant's rows (views "
    "with the tenant column), and with a tenant that owns nothing it must show nothing.",
    anti_pattern="CREATE VIEW app.invoice_totals AS SELECT tenant_id, sum(amount) FROM app.invoices "
    "GROUP BY 1;",
    best_practice="CREATE VIEW ... WITH (security_invoker = true) AS ...;  -- and no matviews "
    "over tenant tables granted to the app",
)


def run(tp: TableProbe) -> Iterator[Finding]:
    for name, kind, has_tenant_column in tp.meta.views:
        key = f"view:{name}"
        if key in tp.prober.seen:
            continue
        tp.prober.seen.add(key)
        what = "materialized view" if kind == "m" else "view"
        if has_tenant_column:
            query = sql.SQL("SELECT count(*) FROM {} WHERE {}::text IS DISTINCT FROM %s").format(
                name.ident, tp.col
            )
            outcome, evidence = tp.attempt(tp.tenant_a, query, [tp.tenant_a])
            owner = f"tenant {tp.tenant_a} bound"
        else:
            query = sql.SQL("SELECT count(*) FROM {}").format(name.ident)
            outcome, evidence = tp.attempt(tp.absent_tenant, query)
            owner = f"tenant {tp.absent_tenant} (owns no rows) bound"
        if outcome.ok and int(outcome.scalar or 0) > 0:
            yield tp.leak(
                RULE,
                f"{what} {name} over {tp.table.label} returns {outcome.scalar} row(s) of other "
                f"tenants with {owner}",
                evidence,
                obj=f"{what} {name}",
                fix=(
                    f"ALTER VIEW {name.ident.as_string(tp.prober.conn)} SET (security_invoker = true);"
                    if kind == "v"
                    else f"REVOKE ALL ON {name.ident.as_string(tp.prober.conn)} FROM "
                    f"{sql.Identifier(tp.prober.app_role).as_string(tp.prober.conn)};"
                    "  -- a materialized view has no policies"
                ),
            )
