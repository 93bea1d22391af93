"""TGA105 copy-without-tenant-column: a table holding a copy of tenant rows without the
tenant column (CREATE TABLE ... AS SELECT id, amount FROM invoices) and without RLS."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from tenantguard.core.names import QualifiedName
from tenantguard.core.sqlbuild import cast_for_type
from tenantguard.errors import UsageError, first_line
from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.audit.rules.tga190_check_not_run import not_run
from tenantguard.tooling.catalog import (
    SYSTEM_SCHEMAS,
    AuditContext,
    Table,
    protect_fix_sql,
    sql_comment,
)
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA105",
    name="copy-without-tenant-column",
    severity=Severity.HIGH,
    tool="audit",
    summary="Copy of a tenant table without the tenant column and without row level security",
    description="A backup, export or reporting table made with CREATE TABLE ... AS SELECT (or "
    "INSERT ... SELECT) that leaves the tenant column out has no RLS and nothing to base a "
    "policy on: whoever can read it reads every tenant's rows. Found with a low false-positive "
    "rate: the table's columns (name and type) must be a subset of a tenant table's, include "
    "its key and at least one other column, and most of a sample of its rows (up to 200, "
    "joined on the key, in a transaction that rolls back, 5 s timeout) must equal rows of that tenant table. Copies "
    "that rename columns or drop the key are not detected. Copies that keep the tenant column "
    "(SELECT *, LIKE) are tenant tables themselves and are reported by TGA101-TGA103.",
    anti_pattern="CREATE TABLE app.invoices_2025 AS SELECT id, amount FROM app.invoices;",
    best_practice="CREATE TABLE app.invoices_2025 AS SELECT tenant_id, id, amount FROM app.invoices;\n"
    "-- then: tenantguard protect app.invoices_2025   (or keep exports out of the database)",
)

_SAMPLE = 200

_COLUMNS = """
SELECT c.oid::int, n.nspname::text, c.relname::text, c.relrowsecurity,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = c.oid AND i.indisprimary),
       pg_catalog.has_table_privilege(%(role)s, c.oid, 'SELECT')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%'
  AND (c.oid = ANY(%(tenant)s)
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attname = %(col)s
                        AND a.attnum > 0 AND NOT a.attisdropped))
"""


@dataclass
class _Rel:
    oid: int
    schema: str
    name: str
    rls: bool
    columns: list[tuple[str, str]]  # (name, type)
    key: list[str]
    readable: bool

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


def _sample(ctx: AuditContext, copy: _Rel, t: Table, key: list[str]) -> tuple[int, int, int] | str:
    """(rows sampled, rows equal to a tenant-table row, distinct tenants among them), or
    why the sample could not be read."""
    cols = [c for c, _ in copy.columns]
    on = sql.SQL(" AND ").join(
        [sql.SQL("t.{} = c.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in key]
        + [
            sql.SQL("t.{}::text IS NOT DISTINCT FROM c.{}::text").format(
                sql.Identifier(c), sql.Identifier(c)
            )
            for c in cols
            if c not in key
        ]
    )
    query = sql.SQL(
        "SELECT count(*)::int, count(t.{tc})::int, count(DISTINCT t.{tc})::int "
        "FROM (SELECT {cols} FROM {copy} LIMIT {n}) c LEFT JOIN {table} t ON {on}"
    ).format(
        tc=sql.Identifier(t.tenant_column),
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols),
        copy=copy.ident,
        n=sql.Literal(_SAMPLE),
        table=t.name.ident,
        on=on,
    )
    try:
        with ctx.conn.transaction(force_rollback=True):  # a SELECT, rolled back anyway
            ctx.conn.execute("SET LOCAL statement_timeout = '5s'")
            row = ctx.conn.execute(query).fetchone()
    except psycopg.Error as exc:
        return first_line(exc)
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    rels = [
        _Rel(r[0], r[1], r[2], r[3], list(zip(r[4], r[5], strict=True)), list(r[6]), r[7])
        for r in ctx.fetch(
            _COLUMNS,
            {
                "role": ctx.runtime_role,
                "system": list(SYSTEM_SCHEMAS),
                "tenant": ctx.tenant_oids,
                "col": ctx.tenant_column,
            },
        )
    ]
    by_oid = {r.oid: r for r in rels}
    tenant = [(t, by_oid[t.oid]) for t in ctx.tables if t.oid in by_oid and not t.parents]
    for copy in rels:
        if copy.oid in ctx.tenant_oids or copy.rls or len(copy.columns) < 2:
            continue
        names = {c for c, _ in copy.columns}
        for t, rel in tenant:
            key = [k for k in rel.key if k != t.tenant_column]
            if (
                not key
                or not set(copy.columns) <= set(rel.columns)
                or not set(key) <= names
                or not names - set(key)
            ):
                continue
            if not (ctx.admin_sees_all(copy.oid) and ctx.admin_sees_all(t.oid)):
                yield not_run(
                    ctx,
                    RULE.code,
                    f"{copy.schema}.{copy.name}",
                    f"its rows look like a copy of {t.label}, but row level security hides rows "
                    f"of {t.label} from the administrator {ctx.access.admin if ctx.access else ''!r},"
                    " so the sample cannot be compared (audit with a superuser or BYPASSRLS "
                    "DSN, or as the owner where row level security is not forced)",
                )
                break
            got = _sample(ctx, copy, t, key)
            if isinstance(got, str):
                label = f"{copy.schema}.{copy.name}"
                yield not_run(ctx, RULE.code, label, f"its sample could not be read: {got}")
                break
            sampled, matched, tenants = got
            if not matched or matched * 2 < sampled:
                continue
            label = f"{copy.schema}.{copy.name}"
            reach = (
                f"the runtime role {ctx.runtime_role!r} can read it"
                if copy.readable
                else "the runtime role cannot read it yet"
            )
            yield Finding(
                RULE,
                label,
                f"{matched} of {sampled} sampled rows equal rows of {t.label} "
                f"({tenants} tenant(s)), without {t.tenant_column} and without RLS; {reach}",
                severity=None if copy.readable else Severity.MEDIUM,
                fix_sql=_fix(ctx, copy, t, key),
            )
            break  # one finding per copy


def _fix(ctx: AuditContext, copy: _Rel, t: Table, key: list[str]) -> str:
    """Put the tenant column back (each row takes the tenant of the row of *t* with its key)
    and protect the copy; a row with no such row keeps NULL, which no tenant sees."""
    col = sql.Identifier(t.tenant_column)
    drop = sql_comment(
        "or, if nothing needs the copy: "
        + sql.SQL("DROP TABLE {};").format(copy.ident).as_string(ctx.conn)
    )
    try:
        type_sql = cast_for_type(t.tenant_type)  # a type protect supports (or an error)
    except UsageError:
        return sql_comment(
            f"a decision for a person: drop it, or add {t.tenant_column} ({t.tenant_type}) "
            "back from the rows it copies and protect it"
        )
    stmts = [
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {};").format(copy.ident, col, type_sql),
        sql.SQL("UPDATE {} c SET {} = t.{} FROM {} t WHERE {};").format(
            copy.ident,
            col,
            col,
            t.name.ident,
            sql.SQL(" AND ").join(
                sql.SQL("t.{} = c.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in key
            ),
        ),
    ]
    return "\n".join(
        [
            *(s.as_string(ctx.conn) for s in stmts),
            protect_fix_sql(QualifiedName(copy.schema, copy.name), t.tenant_column, t.tenant_type),
            drop,
        ]
    )
