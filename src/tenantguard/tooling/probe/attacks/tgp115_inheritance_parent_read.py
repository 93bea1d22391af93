"""TGP115 inheritance-parent-read: tenant B's row, read through an inheritance parent that
has no tenant column."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._session import execute
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP115",
    name="inheritance-parent-read",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="With tenant A bound, an inheritance parent returns tenant B's rows of a child",
    description="Only the parent's row level security applies to child rows read through the "
    "parent. The probe selects tenant B's row (by its table and ctid) from every ancestor of "
    "the tenant table that is not a tenant table itself, with tenant A bound.",
    anti_pattern="CREATE TABLE app.base (id bigint, body text);\n"
    "CREATE TABLE app.notes (tenant_id bigint NOT NULL) INHERITS (app.base);\n"
    "GRANT SELECT ON app.base TO app_user;",
    best_practice="REVOKE ALL ON app.base FROM app_user;",
)

_ANCESTORS = """
WITH RECURSIVE up(parent) AS (
    SELECT i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid = %s::oid
    UNION
    SELECT i.inhparent FROM up JOIN pg_catalog.pg_inherits i ON i.inhrelid = up.parent
)
SELECT n.nspname::text, c.relname::text FROM up
JOIN pg_catalog.pg_class c ON c.oid = up.parent
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND NOT (c.oid = ANY(%s::oid[]))
ORDER BY 1, 2
"""


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if not tp.table.parents:
        return
    tenant_oids = list(tp.tables)
    ancestors = execute(tp.prober.conn, sql.SQL(_ANCESTORS), [tp.table.oid, tenant_oids])
    for schema, name in ancestors.fetchall():
        parent = sql.Identifier(schema, name)
        query = sql.SQL("SELECT count(*) FROM {} WHERE tableoid = %s::oid AND ctid = %s::tid")
        params = [tp.row_b.get("tableoid"), tp.row_b.get("ctid")]
        outcome, evidence = tp.attempt(tp.tenant_a, query.format(parent), params)
        if outcome.ok and int(outcome.scalar or 0) > 0:
            yield tp.leak(
                RULE,
                f"tenant {tp.tenant_b}'s row of {tp.table.label} read through its parent "
                f"{schema}.{name} with tenant {tp.tenant_a} bound",
                evidence,
                obj=f"{schema}.{name}",
                fix=sql.SQL("REVOKE ALL ON {} FROM {};")
                .format(parent, sql.Identifier(tp.prober.app_role))
                .as_string(tp.prober.conn),
            )
        elif not outcome.ok and not outcome.denied:
            tp.note(f"read through parent {schema}.{name}", outcome.error)
