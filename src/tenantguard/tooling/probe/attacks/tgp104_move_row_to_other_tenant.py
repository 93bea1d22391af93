"""TGP104 move-row-to-other-tenant: tenant A rewrites its rows' tenant to B."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP104",
    name="move-row-to-other-tenant",
    severity=Severity.HIGH,
    tool="probe",
    summary="With tenant A bound, UPDATE can set a row's tenant to B",
    description="An UPDATE policy whose WITH CHECK does not pin the tenant lets a tenant push "
    "rows into another tenant (with a WHERE on its own row, or a blanket UPDATE without "
    "WHERE): data planted in the victim's account, or moved out of reach of its owner.",
    anti_pattern="CREATE POLICY p ON app.t FOR UPDATE USING (tenant_id = ...) WITH CHECK (true);",
    best_practice="... WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint))",
)


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "UPDATE" not in tp.table.privileges:
        return
    attempts = []
    if tp.row_a is not None:
        cond, params = tp.where_key(tp.row_a)
        attempts.append(
            (
                sql.SQL("UPDATE {} SET {} = %s WHERE {}").format(tp.ident, tp.col, cond),
                [tp.tenant_b, *params],
            )
        )
    if tp.big:
        tp.note("UPDATE without WHERE", tp.big_reason, Severity.LOW)
    else:
        attempts.append((sql.SQL("UPDATE {} SET {} = %s").format(tp.ident, tp.col), [tp.tenant_b]))
    check = tp.count_check(tp.tenant_b, tp.count_b)  # a trigger may keep the tenant as it was
    for query, qparams in attempts:
        outcome, evidence = tp.attempt(tp.tenant_a, query, qparams, check=check)
        if outcome.ok and outcome.rowcount > 0 and outcome.landed:
            yield tp.leak(
                RULE,
                f"{outcome.rowcount} row(s) of tenant {tp.tenant_a} moved to tenant {tp.tenant_b}",
                evidence,
            )
            return
        if not outcome.ok and not outcome.denied:
            tp.note("update into other tenant", outcome.error)
