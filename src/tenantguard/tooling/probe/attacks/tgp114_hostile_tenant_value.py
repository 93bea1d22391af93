"""TGP114 hostile-tenant-value: a garbage or injected tenant id widens what is visible."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP114",
    name="hostile-tenant-value",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="A malformed tenant id (garbage, a pattern, an injection) shows other tenants' rows",
    description="Policies that compare with LIKE, build SQL from the setting, or cast loosely "
    "can turn a crafted tenant id into a wider match. The probe binds hostile values and "
    "counts the rows whose tenant is not literally that value.",
    anti_pattern="USING (tenant_id::text LIKE current_setting('app.tenant_id'))",
    best_practice="USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))",
)

HOSTILE = (
    "garbage",
    "%",
    "*",
    "' OR '1'='1",
    "1 OR 1=1",
    "-1",
    "0",
    "NULL",
    " ",
    "1,2",
    "9" * 40,
    "é中\u202e",
    "x" * 2000,
)


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "SELECT" not in tp.table.privileges:
        return
    query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(tp.ident, tp.other_tenants())
    for value in HOSTILE:
        outcome, evidence = tp.attempt(value, query, [value])
        if outcome.ok and int(outcome.scalar or 0) > 0:
            shown = value if len(value) < 30 else value[:20] + f"... ({len(value)} chars)"
            yield tp.leak(
                RULE,
                f"{outcome.scalar} row(s) of other tenants visible with the tenant set to {shown!r}",
                evidence if len(value) < 30 else evidence.replace(value, shown),
            )
            return
