"""TGP109 view-over-tenant-table: a view or materialized view shows other tenants' rows."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP109",
    name="view-over-tenant-table",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="A view or materialized view over a tenant table returns other tenants' rows",
    description="A view runs with its owner's rights unless it has security_invoker, and a "
    "materialized view is a copy with no policies at all. The probe reads each one the "
    "runtime role can read, directly or through other views: a view with the tenant column "
    "must show no other tenant's rows with tenant A bound; any other view must answer "
    "differently for tenant A, tenant B and a tenant that owns nothing, or it does not "
    "depend on who asks.",
    anti_pattern="CREATE VIEW app.invoice_totals AS SELECT tenant_id, sum(amount) FROM app.invoices "
    "GROUP BY 1;",
    best_practice="CREATE VIEW ... WITH (security_invoker = true) AS ...;  -- and no matviews "
    "over tenant tables granted to the app",
)


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    conn = tp.prober.conn
    for view in tp.meta.views:
        key = f"view:{view.name}"
        if key in tp.prober.seen:
            continue
        tp.prober.seen.add(key)
        what = "materialized view" if view.kind == "m" else "view"
        ident = view.name.ident.as_string(conn)
        fix = (
            f"ALTER VIEW {ident} SET (security_invoker = true);"
            if view.kind == "v"
            else f"REVOKE ALL ON {ident} FROM {tp.quote(tp.prober.app_role)};"
            "  -- a materialized view has no policies"
        )
        if view.has_tenant_column:
            query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                view.name.ident, tp.other_tenants()
            )
            outcome, evidence = tp.attempt(tp.tenant_a, query, [tp.tenant_a])
            if outcome.ok and int(outcome.scalar or 0) > 0:
                yield tp.leak(
                    RULE,
                    f"{what} {view.name} over {tp.table.label} returns {outcome.scalar} row(s) of "
                    f"other tenants with tenant {tp.tenant_a} bound",
                    evidence,
                    obj=f"{what} {view.name}",
                    fix=fix,
                )
            continue
        got = tp.same_for_all(view.name.ident, [tp.tenant_a, tp.tenant_b, tp.absent_tenant])
        if isinstance(got, tuple):  # (an error for some tenant: fail-closed, or not comparable)
            yield tp.leak(
                RULE,
                f"{what} {view.name} over {tp.table.label} returns the same {got[0]} row(s) "
                f"for tenant {tp.tenant_a}, tenant {tp.tenant_b} and a tenant that owns nothing",
                got[1],
                obj=f"{what} {view.name}",
                fix=fix,
            )
