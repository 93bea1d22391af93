"""TGP102 read-by-key: tenant A fetches tenant B's row by its key (IDOR)."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP102",
    name="read-by-key",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="With tenant A bound, another tenant's row is returned by its primary key",
    description="The classic insecure direct object reference: the app takes an id from the "
    "request and fetches the row. With tenant A bound, tenant B's row must not be found.",
    anti_pattern="SELECT * FROM app.invoices WHERE id = $1;  -- id from the URL, no RLS",
    best_practice="tenantguard protect app.invoices",
)


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "SELECT" not in tp.table.privileges:
        return
    cond, params = tp.where_key(tp.row_b)
    query = sql.SQL("SELECT 1 FROM {} WHERE {}").format(tp.ident, cond)
    outcome, evidence = tp.attempt(tp.tenant_a, query, params)
    if outcome.ok and outcome.rows:
        keys = ", ".join(tp.key_columns)
        yield tp.leak(
            RULE,
            f"tenant {tp.tenant_b}'s row ({keys}) found with tenant {tp.tenant_a} bound",
            evidence,
        )
