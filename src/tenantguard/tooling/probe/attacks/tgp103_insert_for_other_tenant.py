"""TGP103 insert-for-other-tenant: tenant A inserts a row carrying tenant B's id."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import CannotBuildRow, TableProbe, build_row, insert_sql
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP103",
    name="insert-for-other-tenant",
    severity=Severity.HIGH,
    tool="probe",
    summary="With tenant A bound, a row with tenant B's id can be inserted",
    description="Without a tenant-pinned WITH CHECK, tenant A can plant rows in tenant B's "
    "data (fake invoices, extra admin users). The probe inserts a copy of one of B's rows "
    "with fresh unique values; the policy must refuse it.",
    anti_pattern="CREATE POLICY p ON app.t FOR ALL USING (tenant_id = ...);  -- no WITH CHECK,\n"
    "-- or WITH CHECK (true)",
    best_practice="... WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint))",
)


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "INSERT" not in tp.table.privileges:
        return
    try:
        row = build_row(tp.meta, tp.row_b, {tp.table.tenant_column: tp.tenant_b})
    except CannotBuildRow as exc:
        tp.note("insert", str(exc))
        return
    # A trigger may rewrite the row's tenant: only a row that really is B's counts.
    check = tp.count_check(tp.tenant_b, tp.count_b)
    outcome, evidence = tp.attempt(tp.tenant_a, *insert_sql(tp.meta, row), check=check)
    if outcome.ok and outcome.rowcount > 0 and outcome.landed:
        yield tp.leak(
            RULE,
            f"inserted a row for tenant {tp.tenant_b} with tenant {tp.tenant_a} bound",
            evidence,
        )
    elif not outcome.ok and not outcome.denied:
        tp.note("insert", outcome.error)
