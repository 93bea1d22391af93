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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.tooling.catalog import Column, ExposingView, Table, TableMeta
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._session import Check, Outcome, Prober, TenantValue, execute

__all__ = [
    "CannotBuildRow",
    "Row",
    "TableProbe",
    "build_row",
    "fetch_row",
    "insert_sql",
    "prepare_target",
    "synthetic_tenant",
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


# By pg_type.typcategory, then by type name where a category has no common literal.
_SAMPLES = {
    "N": "1",
    "S": "tgprobe",
    "B": "false",
    "D": "now",
    "T": "1 day",
    "A": "{}",
    "R": "empty",
    "I": "127.0.0.1",
    "V": "0",
}
_SAMPLES_BY_TYPE = {
    "json": "{}",
    "jsonb": "{}",
    "bytea": "\\x00",
    "tsvector": "",
    "tsquery": "x",
    "point": "(0,0)",
    "money": "0",
    "xml": "<x/>",
}


def sample_value(col: Column) -> str | None:
    """Any valid value of *col*'s type, for a table with no row to copy."""
    if col.enum_first is not None:
        return col.enum_first
    if col.type == "uuid":
        return str(uuid.uuid4())
    base = col.type.split("(")[0]
    value = _SAMPLES_BY_TYPE.get(base)
    if value is None:
        value = _SAMPLES.get(col.category)
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
    notes: list[tuple[str, str, Severity]] = field(default_factory=list)  # what, why, how bad
    # Set when the target is a view read on its own (the attacks registered on="view"):
    # *table* and *meta* then describe the view, its rows and tenants as the admin sees them.
    view: ExposingView | None = None

    def quote(self, *names: str) -> str:
        """Identifiers for SQL shown to a person (fix suggestions), quoted like psycopg does."""
        return ", ".join(sql.Identifier(n).as_string(self.prober.conn) for n in names)

    @property
    def big_reason(self) -> str:
        return (
            f"not run on a table of about {int(self.table.rows_estimate):,} rows "
            "(statements without WHERE would touch them all)"
        )

    @property
    def col(self) -> sql.Identifier:
        return sql.Identifier(self.table.tenant_column)

    @property
    def ident(self) -> sql.Identifier:
        return self.meta.name.ident

    @property
    def key_columns(self) -> tuple[str, ...]:
        # ctid alone repeats across partitions and inheritance children: pair it with tableoid
        return self.meta.primary_key or ("tableoid", "ctid")

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
        *,
        check: Check | None = None,
        raw: bool = False,
    ) -> tuple[Outcome, str]:
        """Run *query* as the runtime role bound to *tenant* (signed when signing is
        installed; exactly *tenant* with *raw*)."""
        return self.prober.attempt(tenant, query, params, check=check, raw=raw)

    def other_tenants(self) -> sql.Composed:
        """A predicate for rows of some tenant other than a bound ``%s``.

        Rows whose tenant is NULL belong to nobody (shared reference rows): not counted.
        """
        return sql.SQL("{c} IS NOT NULL AND {c}::text <> %s").format(c=self.col)

    def fingerprint(
        self, relation: sql.Composable, tenant: str, sample: int = 1000
    ) -> tuple[Outcome, str | None, int]:
        """(the outcome, a digest of the first *sample* rows, how many) of reading *relation*
        with *tenant* bound: to compare what different tenants are shown."""
        query = sql.SQL(
            "SELECT md5(string_agg(v::text, ',' ORDER BY v::text)), count(*) "
            "FROM (SELECT * FROM {} LIMIT {}) v"
        ).format(relation, sql.Literal(sample))
        outcome, _ = self.attempt(tenant, query)
        if not outcome.ok or not outcome.rows:
            return outcome, None, 0
        digest, n = outcome.rows[0]
        return outcome, digest, int(n)

    def same_for_all(
        self, relation: sql.Composable, tenants: Sequence[str]
    ) -> tuple[int, str] | Outcome | None:
        """Do all *tenants* read the same, non-empty rows of *relation*? (rows, evidence as
        the last tenant) when they do; the first failed outcome when a read failed (a
        refusal is fail-closed, any other error leaves the question open); else None."""
        prints = [self.fingerprint(relation, t) for t in tenants]
        failed = [o for o, _, _ in prints if not o.ok]
        if failed:
            return failed[0]
        if len({d for _, d, _ in prints}) != 1 or not prints[0][2]:
            return None
        _, evidence = self.attempt(tenants[-1], sql.SQL("SELECT * FROM {}").format(relation))
        return prints[0][2], evidence

    def count_check(self, tenant: str, more_than: int) -> Check:
        """After a write: does *tenant* now own more than *more_than* rows? (as the admin)"""
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(self.ident, self.col)

        def check(conn: psycopg.Connection[Any]) -> bool:
            row = execute(conn, query, [tenant]).fetchone()
            return bool(row and int(row[0]) > more_than)

        return check

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

    def note(self, what: str, why: str | None, severity: Severity = Severity.MEDIUM) -> None:
        """An attack that could not be made: reported as TGP190, never counted as safe."""
        self.notes.append((what, why or "no reason given", severity))


def fetch_row(
    conn: Any, meta: TableMeta, col: str, tenant: str | None, also: tuple[str, Any] | None = None
) -> Row | None:
    """One row of *tenant* (or of anyone when None) as text, read as the administrator;
    with *also* = (column, value), such a row if there is one."""
    names = [c.name for c in meta.columns]
    select = sql.SQL("SELECT {}, tableoid::oid::text, ctid::text FROM {}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in names),
        meta.name.ident,
    )
    # An untyped parameter compares as the column's type: the tenant index serves it.
    base: list[tuple[sql.Composable, Any]] = []
    if tenant is not None:
        base.append((sql.SQL("{} = %s").format(sql.Identifier(col)), tenant))
    tries = [base]
    if also is not None and also[1] is not None:
        tries.insert(
            0, [*base, (sql.SQL("{}::text = %s").format(sql.Identifier(also[0])), also[1])]
        )
    for conds in tries:
        where = (
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join(c for c, _ in conds)
            if conds
            else sql.SQL("")
        )
        query = sql.SQL("{}{} LIMIT 1").format(select, where)
        got = execute(conn, query, [v for _, v in conds]).fetchone()
        if got is not None:
            return dict(zip([*names, "tableoid", "ctid"], got, strict=True))
    return None


def synthetic_tenant(col: Column, taken: set[str], known: Sequence[str] = ()) -> str:
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


def user_column(table: Table, user_setting: str) -> str | None:
    """The column the table's policies compare with the bound user, if any.

    Found in the policy expressions (pglast): ``col = (SELECT <schema>.current_user_id())``
    or ``col = current_setting('<user setting>')``, cast or not.
    """
    from pglast import ast

    from tenantguard.tooling.sqlanalysis import (
        call_name,
        column_name,
        literal_text,
        walk,
        walk_expr,
    )

    def reads_user(node: Any) -> bool:
        for n in walk(node):
            if isinstance(n, ast.FuncCall):
                name = call_name(n)[1]
                if name == "current_user_id":
                    return True
                if name == "current_setting" and n.args and literal_text(n.args[0]) == user_setting:
                    return True
        return False

    for policy in table.policies:
        for expr in (policy.qual, policy.with_check):
            for n in walk_expr(expr):
                if not (isinstance(n, ast.A_Expr) and n.lexpr is not None and n.rexpr is not None):
                    continue
                for col, other in ((n.lexpr, n.rexpr), (n.rexpr, n.lexpr)):
                    name = column_name(col)  # owner_id::text = ...
                    if name and reads_user(other) and name != table.tenant_column:
                        return str(name)
    return None


def _remake(
    meta: TableMeta, source: Row | None, overrides: Row
) -> Callable[[], tuple[sql.Composed, list[str | None]]]:
    """The synthetic row's INSERT, built anew (fresh unique values) each time it is called."""
    return lambda: insert_sql(meta, build_row(meta, source, overrides))


def _valid_references(conn: Any, meta: TableMeta, tenant_column: str, tenant: str) -> Row:
    """Values for a synthetic row's foreign keys that point at a real row (of the same
    tenant where the key includes the tenant column), so that later statements on the
    row pass the foreign-key checks PostgreSQL runs on rows a transaction inserted."""
    out: Row = {}
    for ref in meta.references:
        pairs = list(zip(ref.child_columns, ref.parent_columns, strict=True))
        wanted = [(c, p) for c, p in pairs if c != tenant_column]
        if not wanted:
            continue  # only the tenant: the tenant id itself must exist there
        pinned = [p for c, p in pairs if c == tenant_column]
        query = sql.SQL("SELECT {} FROM {}{} LIMIT 1").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(p)) for _, p in wanted),
            ref.parent.ident,
            sql.SQL(" WHERE {} = %s").format(sql.Identifier(pinned[0])) if pinned else sql.SQL(""),
        )
        try:
            with conn.transaction():
                got = execute(conn, query, [tenant] if pinned else []).fetchone()
        except psycopg.Error:
            continue
        if got is not None:
            out.update({c: v for (c, _), v in zip(wanted, got, strict=True)})
    return out


def _unforce(conn: Any, table: Table) -> bool:
    """Should the admin lift FORCE on *table* for this transaction to read every tenant's
    rows? Only when row level security applies to it there because it is (or inherits the
    privileges of) the owner and FORCE is set: not a superuser or BYPASSRLS admin."""
    if not (table.rls and table.forced):
        return False
    row = conn.execute(
        "SELECT pg_catalog.row_security_active(%s::oid) AND pg_catalog.pg_has_role(current_user, "
        "c.relowner, 'USAGE') FROM pg_catalog.pg_class c WHERE c.oid = %s::oid",
        (table.oid, table.oid),
    ).fetchone()
    return bool(row and row[0])


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
    prober.replay = []
    prober.replay_tenants = []
    # The admin owns the table and row level security is forced: it reads the tenants' rows
    # as the owner with FORCE lifted in savepoints that roll back (their lock goes with
    # them), and inserts synthetic rows as the owner with that row's tenant bound.
    owner_forced = _unforce(conn, table)
    prober.forced_table = table.name.ident if owner_forced else None
    can_synthesize = can_synthesize or owner_forced
    tcol = meta.column(table.tenant_column)
    col = sql.Identifier(table.tenant_column)
    found: list[str] = []
    with prober.admin_view(conn):
        for _ in range(2):
            q = sql.SQL(
                "SELECT {}::text FROM {} WHERE {} IS NOT NULL AND NOT ({}::text = ANY(%s)) LIMIT 1"
            )
            got = execute(conn, q.format(col, meta.name.ident, col, col), [found]).fetchone()
            if got is None:
                break
            found.append(got[0])
        source = fetch_row(conn, meta, table.tenant_column, found[0]) if found else None
    synthetic = len(found) < 2
    attacker_without_rows = False
    if synthetic:
        if not can_synthesize:
            raise CannotBuildRow(
                "fewer than two tenants have rows and the administrator cannot bypass row level "
                "security to insert synthetic ones (use a superuser or BYPASSRLS admin DSN)"
            )
        try:
            with conn.transaction():  # a savepoint: a refused row must not end the probe
                if replica_mode:  # skip foreign-key and user triggers for synthetic rows only
                    conn.execute("SET LOCAL session_replication_role = replica")
                while len(found) < 2:
                    tenant = synthetic_tenant(tcol, set(found), known_tenants)
                    overrides = _valid_references(conn, meta, table.tenant_column, tenant)
                    overrides[table.tenant_column] = tenant
                    row = build_row(meta, source, overrides)
                    query, params = insert_sql(meta, row)
                    if owner_forced:
                        prober.bind_as_owner(conn, tenant)
                    execute(conn, query, params)
                    prober.replay.append(_remake(meta, source, overrides))
                    prober.replay_tenants.append(tenant)
                    found.append(tenant)
                if replica_mode:
                    conn.execute("SET LOCAL session_replication_role = origin")
        except (psycopg.Error, CannotBuildRow) as exc:
            prober.replay = []
            prober.replay_tenants = []
            if len(found) != 1:
                raise CannotBuildRow(f"cannot insert a synthetic row: {exc}") from None
            # e.g. a list partition of one tenant: attack it as a tenant that owns no rows here
            found = [synthetic_tenant(tcol, set(found), known_tenants), found[0]]
            attacker_without_rows = True
    with prober.admin_view(conn):
        return _finish_target(
            prober, table, meta, metas, tables, found, synthetic, attacker_without_rows, big_rows
        )


def _finish_target(
    prober: Prober,
    table: Table,
    meta: TableMeta,
    metas: dict[int, TableMeta],
    tables: dict[int, Table],
    found: list[str],
    synthetic: bool,
    attacker_without_rows: bool,
    big_rows: float,
) -> TableProbe:
    conn = prober.conn
    tcol = meta.column(table.tenant_column)
    col = sql.Identifier(table.tenant_column)
    a, b = found
    row_b = fetch_row(conn, meta, table.tenant_column, b)
    user_col = user_column(table, prober.user_setting)
    # Policies that also pin rows to a user: act as the user who owns B's row, from a row of
    # A's with the same user where there is one, so that only the tenant boundary is tested.
    user = row_b.get(user_col) if (row_b is not None and user_col) else None
    prober.user_value = user
    also = (user_col, user) if user_col else None
    row_a = None if attacker_without_rows else fetch_row(conn, meta, table.tenant_column, a, also)
    if row_b is None or (row_a is None and not attacker_without_rows):  # pragma: no cover
        raise CannotBuildRow("the sample rows disappeared")
    count = sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(meta.name.ident, col)
    count_a = int(execute(conn, count, [a]).fetchone()[0])  # type: ignore[index]
    count_b = int(execute(conn, count, [b]).fetchone()[0])  # type: ignore[index]
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
        synthetic_tenant(tcol, {a, b}),
        synthetic,
        table.rows_estimate > big_rows,
    )
