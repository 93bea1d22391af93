"""TGP101 cross-tenant-read: tenant A's session sees tenant B's rows."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP101",
    name="cross-tenant-read",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="With tenant A bound, a query returns other tenants' rows",
    description="The probe binds tenant A as the runtime role and counts the rows whose tenant "
    "column is not A, with no WHERE written by the attacker. Any row is a leak: the table "
    "has no RLS, RLS is not forced for this role, or a policy lets other tenants through.",
    anti_pattern="CREATE TABLE app.t (tenant_id bigint, ...);  -- no RLS",
    best_practice="tenantguard protect app.t",
)


def other_rows(tp: TableProbe) -> tuple[int, str] | None:
    """(rows of other tenants visible to A, evidence) or None when the query failed."""
    from psycopg import sql

    query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(tp.ident, tp.other_tenants())
    outcome, evidence = tp.attempt(tp.tenant_a, query, [tp.tenant_a])
    if not outcome.ok:
        return None
    return int(outcome.scalar or 0), evidence


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "SELECT" not in tp.table.privileges or tp.table.parents:
        return  # children and partitions: TGP110
    got = other_rows(tp)
    if got and got[0] > 0:
        yield tp.leak(
            RULE,
            f"{got[0]} row(s) of other tenants visible with tenant {tp.tenant_a} bound",
            got[1],
        )
