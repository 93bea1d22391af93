"""TGA160 no-tenant-index: no index leads with the tenant column."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.core.sqlbuild import tenant_index_statement
from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA160",
    name="no-tenant-index",
    severity=Severity.LOW,
    tool="audit",
    summary="No index leads with the tenant column",
    description="Every query on the table carries the tenant predicate; without a "
    "(tenant_id, ...) index the server reads other tenants' rows to find one tenant's "
    "(BENCHMARKS.md, PostgreSQL 18, 1M rows of 10,000 tenants: listing a tenant's newest "
    "10 rows took 86 ms at the median without it, 0.15 ms with it).",
    anti_pattern="PRIMARY KEY (id)  -- and no index on tenant_id",
    best_practice="CREATE INDEX ON app.invoices (tenant_id, id);  -- the tenant, then the "
    "primary key: what tenantguard protect creates",
)

# The primary key's columns, in key order, per table.
_PK = """
SELECT i.indrelid::int, array_agg(a.attname::text ORDER BY k.ord)
FROM pg_catalog.pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = ANY(%s) AND i.indisprimary
GROUP BY i.indrelid
"""


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    rows = ctx.fetch(
        "SELECT i.indrelid::int, (i.indkey::int2[])[0] FROM pg_catalog.pg_index i "
        "WHERE i.indrelid = ANY(%s) AND i.indisvalid AND i.indpred IS NULL",
        (ctx.tenant_oids,),
    )
    leading = {(relid, first) for relid, first in rows}
    pks = dict(ctx.fetch(_PK, (ctx.tenant_oids,)))
    for t in ctx.tables:
        if t.relkind == "p":
            continue  # partitioned parents have no storage; their partitions are checked
        if (t.oid, t.tenant_attnum) not in leading:
            yield Finding(
                RULE,
                t.label,
                f"no index starts with {t.tenant_column}",
                # The statement protect runs (one answer for the index a table needs).
                fix_sql=tenant_index_statement(
                    t.name, t.tenant_column, pks.get(t.oid, [])
                ).as_string()
                + ";",
            )
