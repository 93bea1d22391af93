"""TGP105 update-other-tenant-rows: tenant A's UPDATE reaches tenant B's rows."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe

RULE = Rule(
    code="TGP105",
    name="update-other-tenant-rows",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="With tenant A bound, UPDATE changes (or takes over) tenant B's rows",
    description="The UPDATE policy's USING clause decides which rows an UPDATE can reach. If "
    "it is not tenant-pinned, tenant A can change B's rows by key, or every tenant's rows "
    "with an UPDATE that has no WHERE, or take B's row over by setting its tenant to A.",
    anti_pattern="CREATE POLICY p ON app.t FOR UPDATE USING (true)\n"
    "  WITH CHECK (tenant_id = ...);",
    best_practice="USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))",
)


def run(tp: TableProbe) -> Iterator[Finding]:
    if "UPDATE" not in tp.table.privileges:
        return
    cond, params = tp.where_key(tp.row_b)
    steal = sql.SQL("UPDATE {} SET {} = %s WHERE {}").format(tp.ident, tp.col, cond)
    outcome, evidence = tp.attempt(tp.tenant_a, steal, [tp.tenant_a, *params])
    if outcome.ok and outcome.rowcount > 0:
        yield tp.leak(
            RULE, f"tenant {tp.tenant_b}'s row taken over by tenant {tp.tenant_a}", evidence
        )
        return
    if tp.big:
        return
    touch = sql.SQL("UPDATE {} SET {} = {}").format(tp.ident, tp.col, tp.col)
    outcome, evidence = tp.attempt(tp.tenant_a, touch)
    if outcome.ok and outcome.rowcount > tp.count_a:
        yield tp.leak(
            RULE,
            f"an UPDATE without WHERE touched {outcome.rowcount} rows; tenant {tp.tenant_a} owns "
            f"{tp.count_a}",
            evidence,
        )
    elif not outcome.ok and not outcome.denied:
        tp.note("update other tenant rows", outcome.error)
