"""TGA150 key-without-tenant: unique keys or foreign keys that leave out the tenant column."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import (
    FK_COLUMNS,
    AuditContext,
    replace_foreign_key_sql,
    sql_comment,
)
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA150",
    name="key-without-tenant",
    severity=Severity.MEDIUM,
    tool="audit",
    summary="Unique key or foreign key on a tenant table without the tenant column",
    description="A unique key the app can write (not an identity) without the tenant column is "
    "an existence oracle: inserting a colliding value reveals another tenant's row. A foreign "
    "key to another tenant table that does not match the tenant column to the target's tenant "
    "column lets a row reference another tenant's row. Foreign keys to tables without the "
    "tenant column (shared lookup tables such as currencies) are not reported. Rated by what "
    "the runtime role can reach: the oracle needs INSERT or UPDATE, so a key on a table it "
    "cannot write is low. The tenant root table (its tenant column alone is a key: one row "
    "per tenant) names tenants, so its other keys (a unique tenant name or slug) are global "
    "by design: not reported when the runtime role cannot write the table, low when it can "
    "(the defect is that it can add or rename tenants: TGA107).",
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
       bool_and(a.attidentity = 'a'),
       -- every column drawn at random by default (a uuid surrogate key): the oracle only
       -- answers for a value the asker already knows
       bool_and(coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                         ~ '^(public\\.)?(gen_random_uuid|uuid_generate_v4)\\(\\)$', false))
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE i.indisunique AND i.indrelid = ANY(%(oids)s)
GROUP BY i.indexrelid, i.indrelid, i.indkey
"""
# Foreign keys whose target is a tenant table: it has its tenant key (its own, given as
# TABLE=COLUMN or inferred, for an audited table; the tenant column otherwise; the target
# need not be among the audited tables). Safe: some key column is the child's tenant key and
# it references the target's. With the columns and actions, for a fix that replaces the key.
_FKS = (
    """
WITH keys(oid, col) AS (SELECT * FROM unnest(%(oids)s::oid[], %(cols)s::text[]))
SELECT con.conname::text, con.conrelid::int, tn.nspname::text, tc.relname::text,
       EXISTS (SELECT 1 FROM unnest(con.conkey, con.confkey) AS k(src, dst)
               WHERE k.src = (%(attnums)s::int[])[array_position(%(oids)s::int[], con.conrelid::int)]
                 AND k.dst = ta.attnum),
       ta.attname::text,"""
    + FK_COLUMNS
    + """,
       con.confupdtype::text, con.confdeltype::text
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class tc ON tc.oid = con.confrelid
JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
JOIN pg_catalog.pg_attribute ta
  ON ta.attrelid = con.confrelid AND ta.attnum > 0 AND NOT ta.attisdropped
 AND ta.attname = coalesce((SELECT k.col FROM keys k WHERE k.oid = con.confrelid), %(col)s)
WHERE con.contype = 'f' AND con.conrelid = ANY(%(oids)s) AND con.conparentid = 0
ORDER BY 1
"""
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    by_oid = {t.oid: t for t in ctx.tables}
    rows = ctx.fetch(_UNIQUE, {"oids": ctx.tenant_oids})
    roots = {relid for _i, relid, cols, _a, _r in rows if cols == [by_oid[relid].tenant_column]}
    for index, relid, cols, all_identity, random_default in rows:
        t = by_oid[relid]
        if t.tenant_column in cols or all_identity:
            continue
        writes = sorted({"INSERT", "UPDATE"} & t.privileges)
        if relid in roots and not writes:
            continue  # the tenants' own names: global by design, and out of the app's reach
        quoted = ", ".join(sql.Identifier(c).as_string(ctx.conn) for c in (t.tenant_column, *cols))
        message = f"unique on ({', '.join(cols)}) without {t.tenant_column}: an existence oracle"
        fix = sql_comment(f"make it UNIQUE ({quoted})")
        severity = None
        if relid in roots:
            message = (
                f"unique on ({', '.join(cols)}) of the tenant root table (one row per "
                f"{t.tenant_column}): global by design, but the runtime role "
                f"{ctx.runtime_role!r} can {' and '.join(writes)} tenants, so a colliding "
                "value tells it another tenant's; rated low, the defect is the write grant "
                "(TGA107)"
            )
            revoke = sql.SQL("REVOKE INSERT, UPDATE ON {} FROM {};").format(
                t.name.ident, sql.Identifier(ctx.runtime_role)
            )
            fix = sql_comment(
                "tenant names are global by design; unless the app must add or rename "
                f"tenants: {revoke.as_string(ctx.conn)}"
            )
            severity = Severity.LOW
        elif random_default:
            message += (
                ", but its values are drawn at random by default (a uuid key): it answers "
                "only for a value the runtime role already knows: rated low"
            )
            severity = Severity.LOW
        elif not writes:
            message += (
                f", but the runtime role {ctx.runtime_role!r} cannot INSERT or UPDATE the "
                "table, so it cannot ask it: rated low"
            )
            severity = Severity.LOW
        yield Finding(RULE, f"index {index} on {t.label}", message, fix_sql=fix, severity=severity)
    fks = ctx.fetch(
        _FKS,
        {
            "oids": ctx.tenant_oids,
            "cols": [t.tenant_column for t in ctx.tables],
            "attnums": [t.tenant_attnum for t in ctx.tables],
            "col": ctx.tenant_column,
        },
    )
    for name, relid, schema, table, pinned, key, ccols, pcols, on_update, on_delete in fks:
        if pinned:
            continue
        t = by_oid[relid]
        pairs = [(c, p) for c, p in zip(ccols, pcols, strict=True) if t.tenant_column != c]
        fix = replace_foreign_key_sql(
            ctx.conn,
            t.name.ident,
            name,
            [(t.tenant_column, key), *[(c, p) for c, p in pairs if p != key]],
            sql.Identifier(schema, table),
            (on_update, on_delete),
        )
        yield Finding(
            RULE,
            f"foreign key {name} on {t.label}",
            f"references the tenant table {schema}.{table} without matching {t.tenant_column} "
            f"to its tenant key {key}: a row can point at another tenant's row",
            fix_sql=fix,
        )
