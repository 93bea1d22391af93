"""TGP105 update-other-tenant-rows: tenant A's UPDATE reaches tenant B's rows."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP105",
    name="update-other-tenant-rows",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="With tenant A bound, UPDATE changes (or takes over) tenant B's rows",
    description="The UPDATE policy's USING clause decides which rows an UPDATE can reach. If "
    "it is not tenant-pinned, tenant A can take B's row over by key, or change every "
    "tenant's rows with an UPDATE that reads no column (SET note = 'x', no WHERE): "
    "SELECT policies apply only to statements that read columns, so a tight SELECT policy "
    "does not stop it.",
    anti_pattern="CREATE POLICY r ON app.t FOR SELECT USING (tenant_id = ...);\n"
    "CREATE POLICY u ON app.t FOR UPDATE USING (true) WITH CHECK (tenant_id = ...);",
    best_practice="USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))",
)


def _blind_column(tp: TableProbe) -> str:
    """A column to assign a constant to: not a key, a foreign key, generated, or the tenant."""
    keys = tp.meta.unique_columns | {tp.table.tenant_column}
    keys |= {c for ref in tp.meta.references for c in ref.child_columns}
    for col in tp.meta.columns:
        if not col.generated and not col.identity and col.name not in keys:
            return col.name
    return tp.table.tenant_column


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "UPDATE" not in tp.table.privileges:
        return
    cond, params = tp.where_key(tp.row_b)
    steal = sql.SQL("UPDATE {} SET {} = %s WHERE {}").format(tp.ident, tp.col, cond)
    outcome, evidence = tp.attempt(tp.tenant_a, steal, [tp.tenant_a, *params])
    if outcome.ok and outcome.rowcount > 0:
        yield tp.leak(RULE, f"tenant {tp.tenant_b}'s row updated by tenant {tp.tenant_a}", evidence)
        return
    if tp.big:
        tp.note("UPDATE without WHERE", tp.big_reason, Severity.LOW)
        return
    # Assign a constant (B's own value, so constraints hold): the statement reads no column.
    column = _blind_column(tp)
    value = tp.tenant_a if column == tp.table.tenant_column else tp.row_b.get(column)
    blind = sql.SQL("UPDATE {} SET {} = %s").format(tp.ident, sql.Identifier(column))
    outcome, evidence = tp.attempt(tp.tenant_a, blind, [value])
    if outcome.ok and outcome.rowcount > tp.count_a:
        yield tp.leak(
            RULE,
            f"an UPDATE without WHERE changed {outcome.rowcount} rows; tenant {tp.tenant_a} "
            f"owns {tp.count_a}",
            evidence,
        )
    elif not outcome.ok and not outcome.denied:
        tp.note("UPDATE without WHERE", outcome.error)
