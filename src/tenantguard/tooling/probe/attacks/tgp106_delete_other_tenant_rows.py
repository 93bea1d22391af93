"""TGP106 delete-other-tenant-rows: tenant A's DELETE removes tenant B's rows."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP106",
    name="delete-other-tenant-rows",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="With tenant A bound, DELETE removes tenant B's rows",
    description="A DELETE reaches the rows the DELETE (or ALL) policy's USING clause admits. "
    "The probe deletes B's row by key, and runs a DELETE without WHERE, inside a "
    "transaction that is rolled back; either must leave B's rows alone.",
    anti_pattern="CREATE POLICY p ON app.t FOR DELETE USING (true);",
    best_practice="USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))",
)


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "DELETE" not in tp.table.privileges:
        return
    cond, params = tp.where_key(tp.row_b)
    outcome, evidence = tp.attempt(
        tp.tenant_a, sql.SQL("DELETE FROM {} WHERE {}").format(tp.ident, cond), params
    )
    if outcome.ok and outcome.rowcount > 0:
        yield tp.leak(
            RULE, f"tenant {tp.tenant_b}'s row deleted with tenant {tp.tenant_a} bound", evidence
        )
        return
    if tp.big:
        tp.note("DELETE without WHERE", tp.big_reason, Severity.LOW)
        return
    outcome, evidence = tp.attempt(tp.tenant_a, sql.SQL("DELETE FROM {}").format(tp.ident))
    if outcome.ok and outcome.rowcount > tp.count_a:
        yield tp.leak(
            RULE,
            f"a DELETE without WHERE removed {outcome.rowcount} rows; tenant {tp.tenant_a} owns "
            f"{tp.count_a}",
            evidence,
        )
