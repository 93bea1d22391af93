"""TGP113 no-tenant-context: with no tenant (or an empty one) bound, rows are visible."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._session import SETUP_FAILED, UNSET
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP113",
    name="no-tenant-context",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="With no tenant bound, or an empty one, queries return rows",
    description="A request that forgets to bind a tenant (a background job, a new endpoint, "
    "a pooled connection after the transaction ended) must fail closed: an error, or no "
    "rows. The probe queries as the runtime role with the setting unset (the role's "
    "persistent defaults applied, as at login) and with it set to ''.",
    anti_pattern="USING (current_setting('app.tenant_id', true) IS NULL OR tenant_id = ...)\n"
    "-- or: ALTER ROLE app_user SET app.tenant_id = '1';",
    best_practice="USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))  -- raises when unset",
)


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "SELECT" not in tp.table.privileges:
        return
    query = sql.SQL("SELECT count(*) FROM {}").format(tp.ident)
    for tenant, what in ((UNSET, "no tenant bound"), ("", "the tenant setting empty")):
        outcome, evidence = tp.attempt(tenant, query)
        if outcome.sqlstate == SETUP_FAILED:
            tp.note(what, f"the synthetic rows could not be made again: {outcome.error}")
            continue
        if outcome.ok and int(outcome.scalar or 0) > 0:
            yield tp.leak(RULE, f"{outcome.scalar} row(s) visible with {what}", evidence)
            return
