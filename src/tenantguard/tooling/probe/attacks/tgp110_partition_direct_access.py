"""TGP110 partition-direct-access: a partition or child table, queried directly, leaks."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY
from tenantguard.tooling.probe.attacks.tgp101_cross_tenant_read import other_rows

RULE = Rule(
    code="TGP110",
    name="partition-direct-access",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="A partition or inheritance child, queried by name, returns other tenants' rows",
    description="Policies on a partitioned or parent table apply only to queries through the "
    "parent. A partition or child named directly is checked against its own policies: "
    "without them (and with a grant) it shows every tenant.",
    anti_pattern="CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES ...;\n"
    "GRANT SELECT ON app.events_2026 TO app_user;",
    best_practice="tenantguard protect app.events_2026  -- or revoke direct access to partitions",
)


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "SELECT" not in tp.table.privileges or not tp.table.parents:
        return
    got = other_rows(tp)
    if got and got[0] > 0:
        parents = ", ".join(tp.table.parents)
        yield tp.leak(
            RULE,
            f"{got[0]} row(s) of other tenants visible through {tp.table.label} (child of {parents}) "
            f"with tenant {tp.tenant_a} bound",
            got[1],
        )
