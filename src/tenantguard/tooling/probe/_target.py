"""One table under attack: tenant A (the attacker), tenant B (the victim), their rows.

Tenants are taken from the table's data; when it has fewer than two, synthetic rows
are inserted as the administrator inside the table's transaction (which rolls back).
Rows are built from a real row of the table where there is one, with fresh values
for every unique column, and explicit values for identity and serial columns so
that no sequence is advanced (sequences are not transactional).
"""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.tooling.audit.catalog import Table
from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.probe._catalog import Column, TableMeta
from tenantguard.tooling.probe._session import Prober, TenantValue

__all__ = [
    "CannotBuildRow",
    "Row",
    "TableProbe",
    "build_row",
    "fetch_row",
    "insert_sql",
    "prepare_target",
]

Row = dict[str, str | None]  # column -> text representation (None: NULL)


class CannotBuildRow(Exception):
    """The probe cannot make a valid row for this table (the reason is the message)."""


_INT_RANGES = {"smallint": (20_000, 32_000), "integer": (1_000_000_000, 2_100_000_000)}


def fresh_value(col: Column) -> str:
    """A value for *col* that no existing row is likely to hold (for unique columns)."""
    if col.category == "N":
        lo, hi = _INT_RANGES.get(col.type, (10**15, 9 * 10**15))
        return str(random.randint(lo, hi))
    if col.category == "S":
        text = "tgprobe-" + secrets.token_hex(6)
        return text[-col.max_length :] if col.max_length else text
    if col.type == "uuid":
        return str(uuid.uuid4())
    raise CannotBuildRow(f"cannot make a fresh value of type {col.type} for {col.name}")


_SAMPLES = {"N": "1", "S": "tgprobe", "B": "false", "D": "now", "T": "1 day", "A": "{}"}
_SAMPLES_BY_TYPE = {"json": "{}", "jsonb": "{}", "bytea": "\\x00", "inet": "127.0.0.1"}


def sample_value(col: Column) -> str | None:
    """Any valid value of *col*'s type, for a table with no row to copy."""
    if col.enum_first is not None:
        return col.enum_first
    if col.type == "uuid":
        return str(uuid.uuid4())
    value = _SAMPLES_BY_TYPE.get(col.type) or _SAMPLES.get(col.category)
    if value is None and col.not_null:
        raise CannotBuildRow(f"no sample value for type {col.type} ({col.name})")
    return value


def build_row(meta: TableMeta, source: Row | None, overrides: Row) -> Row:
    """Column values for an INSERT: *overrides*, else fresh for unique/sequence columns,
    else the default where one exists, else *source*'s value, else a sample."""
    unique = meta.unique_columns
    row: Row = {}
    for col in meta.columns:
        if col.generated:
            continue
        if col.name in overrides:
            row[col.name] = overrides[col.name]
        elif col.identity or col.sequence_default:
            row[col.name] = fresh_value(col)  # never nextval(): sequences are not rolled back
        elif col.name in unique:
            if col.has_default:
                continue  # e.g. DEFAULT gen_random_uuid()
            row[col.name] = fresh_value(col)
        elif col.has_default and (source is None or col.name not in source):
            continue
        elif source is not None:
            row[col.name] = source.get(col.name)
        else:
            row[col.name] = sample_value(col)
    return row


def insert_sql(meta: TableMeta, row: Row) -> tuple[sql.Composed, list[str | None]]:
    cols = list(row)
    query = sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})").format(
        meta.name.ident,
        sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(sql.Placeholder() * len(cols)),
    )
    return query, [row[c] for c in cols]


@dataclass
class TableProbe:
    """What an attack sees: the table, the two tenants, a row of each, the prober."""

    prober: Prober
    table: Table
    meta: TableMeta
    metas: dict[int, TableMeta]
    tables: dict[int, Table]
    tenant_a: str
    tenant_b: str
    row_a: Row | None  # None: tenant A owns no row here (a one-tenant partition)
    row_b: Row
    count_a: int
    count_b: int
    absent_tenant: str  # a tenant id of the right type with no rows here
    synthetic: bool
    big: bool  # too many rows for statements without a WHERE
    findings: list[Finding] = field(default_factory=list)
    inconclusive: list[str] = field(default_factory=list)

    @property
    def col(self) -> sql.Identifier:
        return sql.Identifier(self.table.tenant_column)

    @property
    def ident(self) -> sql.Identifier:
        return self.meta.name.ident

    @property
    def key_columns(self) -> tuple[str, ...]:
        return self.meta.primary_key or ("ctid",)

    def where_key(self, row: Row) -> tuple[sql.Composable, list[str | None]]:
        """``WHERE`` the row's primary key (or its ctid) equals *row*'s."""
        cols = self.key_columns
        cond = sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in cols
        )
        return cond, [row.get(c) for c in cols]

    def attempt(
        self,
        tenant: TenantValue,
        query: sql.Composed | sql.SQL,
        params: Sequence[Any] | None = None,
    ) -> tuple[Any, str]:
        return self.prober.attempt(tenant, query, params)

    def leak(
        self,
        rule: Rule,
        message: str,
        evidence: str,
        obj: str | None = None,
        fix: str | None = None,
    ) -> Finding:
        """A finding; the fix defaults to what ``tenantguard protect`` runs on the table."""
        return Finding(
            rule,
            obj or self.table.label,
            message,
            fix_sql=fix or self.table.protect_sql(self.meta.primary_key),
            evidence=evidence,
        )

    def note(self, what: str, why: str | None) -> None:
        self.inconclusive.append(f"{self.table.label}: {what}: {why}")


def fetch_row(conn: Any, meta: TableMeta, col: str, tenant: str | None) -> Row | None:
    """One row of *tenant* (or of anyone when None) as text, read as the administrator."""
    names = [c.name for c in meta.columns]
    select = sql.SQL("SELECT {}, ctid::text FROM {}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in names),
        meta.name.ident,
    )
    if tenant is None:
        got = conn.execute(sql.SQL("{} LIMIT 1").format(select)).fetchone()
    else:  # an untyped parameter compares as the column's type: the tenant index serves it
        query = sql.SQL("{} WHERE {} = %s LIMIT 1").format(select, sql.Identifier(col))
        got = conn.execute(query, (tenant,)).fetchone()
    if got is None:
        return None
    row: Row = dict(zip([*names, "ctid"], got, strict=True))
    return row


def _synthetic_tenant(col: Column, taken: set[str], known: Sequence[str] = ()) -> str:
    """A tenant id not in *taken*: a tenant known from other tables first (its foreign keys
    to a tenants table then hold), else a fresh value of the column's type."""
    for value in known:
        if value not in taken:
            return value
    for _ in range(20):
        fresh = fresh_value(col)  # raises CannotBuildRow for types it cannot invent
        if fresh not in taken:
            return fresh
    raise CannotBuildRow("no free synthetic tenant id")  # pragma: no cover


def prepare_target(
    prober: Prober,
    table: Table,
    meta: TableMeta,
    metas: dict[int, TableMeta],
    tables: dict[int, Table],
    *,
    can_synthesize: bool,
    replica_mode: bool,
    known_tenants: Sequence[str] = (),
    big_rows: float = 1_000_000,
) -> TableProbe:
    """Pick tenants A and B (inserting synthetic rows if needed) inside the open transaction."""
    conn = prober.conn
    tcol = meta.column(table.tenant_column)
    col = sql.Identifier(table.tenant_column)
    found: list[str] = []
    for _ in range(2):
        q = sql.SQL(
            "SELECT {}::text FROM {} WHERE {} IS NOT NULL AND NOT ({}::text = ANY(%s)) LIMIT 1"
        )
        got = conn.execute(q.format(col, meta.name.ident, col, col), (found,)).fetchone()
        if got is None:
            break
        found.append(got[0])
    synthetic = len(found) < 2
    attacker_without_rows = False
    if synthetic:
        if not can_synthesize:
            raise CannotBuildRow(
                "fewer than two tenants have rows and the administrator cannot bypass row level "
                "security to insert synthetic ones (use a superuser or BYPASSRLS admin DSN)"
            )
        source = fetch_row(conn, meta, table.tenant_column, found[0]) if found else None
        try:
            with conn.transaction():  # a savepoint: a refused row must not end the probe
                if replica_mode:  # skip foreign-key and user triggers for synthetic rows only
                    conn.execute("SET LOCAL session_replication_role = replica")
                while len(found) < 2:
                    tenant = _synthetic_tenant(tcol, set(found), known_tenants)
                    row = build_row(meta, source, {table.tenant_column: tenant})
                    conn.execute(*insert_sql(meta, row))
                    found.append(tenant)
                if replica_mode:
                    conn.execute("SET LOCAL session_replication_role = origin")
        except (psycopg.Error, CannotBuildRow) as exc:
            if len(found) != 1:
                raise CannotBuildRow(f"cannot insert a synthetic row: {exc}") from None
            # e.g. a list partition of one tenant: attack it as a tenant that owns no rows here
            found = [_synthetic_tenant(tcol, set(found), known_tenants), found[0]]
            attacker_without_rows = True
    a, b = found
    row_a = None if attacker_without_rows else fetch_row(conn, meta, table.tenant_column, a)
    row_b = fetch_row(conn, meta, table.tenant_column, b)
    if row_b is None or (row_a is None and not attacker_without_rows):  # pragma: no cover
        raise CannotBuildRow("the sample rows disappeared")
    count = sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(meta.name.ident, col)
    count_a = int(conn.execute(count, (a,)).fetchone()[0])  # type: ignore[index]
    count_b = int(conn.execute(count, (b,)).fetchone()[0])  # type: ignore[index]
    return TableProbe(
        prober,
        table,
        meta,
        metas,
        tables,
        a,
        b,
        row_a,
        row_b,
        count_a,
        count_b,
        _synthetic_tenant(tcol, {a, b}),
        synthetic,
        table.rows_estimate > big_rows,
    )
