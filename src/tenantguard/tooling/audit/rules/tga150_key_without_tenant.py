"""TGA150 key-without-tenant: unique keys or foreign keys that leave out the tenant column."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA150",
    name="key-without-tenant",
    severity=Severity.MEDIUM,
    tool="audit",
    summary="Unique key or foreign key on a tenant table without the tenant column",
    description="A unique key the app can write (not an identity) without the tenant column is "
    "an existence oracle: inserting a colliding value reveals another tenant's row. A foreign "
    "key that does not lead with the tenant column lets a row reference another tenant's row.",
    anti_pattern="CREATE TABLE app.users (tenant_id bigint, email text UNIQUE, ...);",
    best_practice="UNIQUE (tenant_id, email); FOREIGN KEY (tenant_id, owner_id) REFERENCES "
    "app.users (tenant_id, id)",
)

# Unique constraints/indexes whose columns are all writable by the app (identity columns
# GENERATED ALWAYS cannot be supplied, so they are no oracle).
_UNIQUE = """
SELECT i.indexrelid::regclass::text, i.indrelid::int,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey) k
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k),
       bool_and(a.attidentity = 'a')
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indisunique AND i.indrelid = ANY(%(oids)s)
GROUP BY i.indexrelid, i.indrelid, i.indkey
"""
_FKS = """
SELECT con.conname::text, con.conrelid::int, con.conkey::int2[], con.confrelid::regclass::text
FROM pg_catalog.pg_constraint con
WHERE con.contype = 'f' AND con.conrelid = ANY(%(oids)s)
"""


def check(ctx: AuditContext) -> Iterator[Finding]:
    by_oid = {t.oid: t for t in ctx.tables}
    tenant_cols = {t.oid: t.tenant_attnum for t in ctx.tables}
    rows = ctx.fetch(_UNIQUE, {"oids": ctx.tenant_oids})
    for index, relid, cols, all_identity in rows:
        t = by_oid[relid]
        if t.tenant_column in cols or all_identity:
            continue
        yield Finding(
            RULE,
            f"index {index} on {t.label}",
            f"unique on ({', '.join(cols)}) without {t.tenant_column}: an existence oracle",
            fix_sql=f"-- make it UNIQUE ({t.tenant_column}, {', '.join(cols)})",
        )
    for name, relid, keys, target in ctx.fetch(_FKS, {"oids": ctx.tenant_oids}):
        t = by_oid[relid]
        if keys and keys[0] == tenant_cols[relid]:
            continue
        yield Finding(
            RULE,
            f"foreign key {name} on {t.label}",
            f"references {target} without leading with {t.tenant_column}: a row can point at "
            "another tenant's row",
            fix_sql=f"-- FOREIGN KEY ({t.tenant_column}, ...) REFERENCES {target} "
            f"({t.tenant_column}, ...)",
        )
