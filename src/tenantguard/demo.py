"""``tenantguard demo``: show, on a real database, what tenantguard prevents.

Builds a small SaaS schema (tenants, users, projects, invoices) with three tenants
in a scratch database, shows a forgotten ``WHERE`` leaking on a plain connection,
protects the tables, and then checks each isolation claim. Every claim is checked
for real; the demo exits non-zero if any claim turns out false.

Both columns are measured. The "plain connection" column runs each attack as the runtime
role on a plain psycopg connection (or a plain psycopg_pool) against the schema before
``protect``, inside a transaction that rolls back, and reports what the server did; the
"through tenantguard" column runs it through ``TenantPool`` after ``protect``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from tenantguard.admin import admin_connect, install, protect
from tenantguard.core.context import tenant
from tenantguard.core.names import QualifiedName
from tenantguard.core.sqlbuild import InstallSpec, grant_statements
from tenantguard.drivers.psycopg import TenantPool
from tenantguard.errors import NoTenantContext, SessionStateRefused, first_line
from tenantguard.tooling.audit import audit_database
from tenantguard.tooling.findings import Report, Severity
from tenantguard.tooling.probe import probe_database

__all__ = ["Claim", "DemoResult", "run_demo"]

SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.tenants (id bigint PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE app.users (
    tenant_id bigint NOT NULL REFERENCES app.tenants(id),
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE TABLE app.projects (
    tenant_id bigint NOT NULL REFERENCES app.tenants(id),
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id bigint NOT NULL,
    name text NOT NULL,
    FOREIGN KEY (tenant_id, owner_id) REFERENCES app.users (tenant_id, id)
);
CREATE TABLE app.invoices (
    tenant_id bigint NOT NULL REFERENCES app.tenants(id),
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    amount_cents bigint NOT NULL,
    customer text NOT NULL
);
"""
TENANTS = {1: ("acme", 3), 2: ("globex", 5), 3: ("initech", 7)}  # id: (name, invoices)
TABLES = ["app.users", "app.projects", "app.invoices"]


@dataclass
class Claim:
    claim: str
    plain: str  # what a plain connection does
    guarded: str  # what tenantguard does
    ok: bool


@dataclass
class DemoResult:
    claims: list[Claim]
    server_version: str
    refused: list[str] = field(default_factory=list)  # statements the pool refused

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.claims)


def _with(dsn: str, **changes: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.update(changes)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


@contextmanager
def _scratch(admin_dsn: str, keep: bool) -> Iterator[tuple[str, str, str, str]]:
    suffix = secrets.token_hex(3)
    db, owner, app = f"tenantguard_demo_{suffix}", f"tgdemo_owner_{suffix}", f"tgdemo_app_{suffix}"
    with admin_connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    try:
        yield _with(admin_dsn, dbname=db), db, owner, app
    finally:
        if not keep:
            with admin_connect(admin_dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
                )
                for role in (app, owner):
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _build(conn: psycopg.Connection[Any], db: str, owner: str, app: str) -> None:
    install(conn, InstallSpec(app_role=app, owner_role=owner))
    conn.execute(
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(db), sql.Identifier(owner)
        )
    )
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner)))
        conn.execute(SCHEMA)
    names = [QualifiedName.parse(t) for t in [*TABLES, "app.tenants"]]
    for stmt in grant_statements(names, app):
        conn.execute(stmt)
    for tid, (name, n_invoices) in TENANTS.items():
        conn.execute("INSERT INTO app.tenants VALUES (%s, %s)", (tid, name))
        conn.execute(
            "INSERT INTO app.users (tenant_id, email) VALUES (%s, %s), (%s, %s)",
            (tid, f"alice@{name}.test", tid, f"bob@{name}.test"),
        )
        conn.execute(
            "INSERT INTO app.invoices (tenant_id, amount_cents, customer) "
            "SELECT %s, g * 1000, %s || ' customer ' || g FROM generate_series(1, %s) g",
            (tid, name, n_invoices),
        )


def _short(text: str, limit: int = 90) -> str:
    """*text* cut at a word boundary (never mid-word), marked with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:(") + " ..."


def _attempt(fn: Callable[[], object]) -> tuple[bool, str]:
    """(succeeded, short description of the outcome)."""
    try:
        out = fn()
    except NoTenantContext:
        return False, "NoTenantContext (before any I/O)"
    except psycopg.Error as exc:
        return _refused(exc)
    return True, str(out)


def _refused(exc: psycopg.Error) -> tuple[bool, str]:
    first = str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
    return False, f"refused: {_short(first)}"


@dataclass
class PlainOutcomes:
    """What each attack did on a plain connection: (it went through, what happened)."""

    insert: tuple[bool, str]
    move: tuple[bool, str]
    idor: tuple[bool, str]
    pooled: tuple[bool, str]


def _rolled_back(app_dsn: str, query: str, params: tuple[Any, ...] = ()) -> tuple[int, Any]:
    """Run *query* as the runtime role in a transaction that rolls back: (rowcount, rows)."""
    with (
        psycopg.connect(app_dsn, autocommit=True) as conn,
        conn.transaction(force_rollback=True),
    ):
        cur = conn.execute(query, params)
        return cur.rowcount, cur.fetchall() if cur.description else None


def measure_plain(
    app_dsn: str, victim_row: int, *, pool_reset: Callable[[Any], None] | None = None
) -> PlainOutcomes:
    """Run the attacks of the demo's claims on a plain connection, as the runtime role:
    acme (tenant 1) writes globex's id, moves every row, and fetches globex's invoice
    *victim_row* by id, each in a transaction that rolls back; then a plain psycopg_pool of
    one connection (with *pool_reset* as its ``reset=``) is dirtied by acme's request and
    read by globex's. Each outcome says what the server did, measured, not assumed."""

    def insert() -> str:
        _, rows = _rolled_back(
            app_dsn,
            "INSERT INTO app.invoices (tenant_id, amount_cents, customer) "
            "VALUES (2, 1, 'planted by acme') RETURNING tenant_id",
        )
        return f"inserted a row with globex's tenant_id {rows[0][0]} (rolled back)"

    def move() -> str:
        count, _ = _rolled_back(app_dsn, "UPDATE app.invoices SET tenant_id = 2")
        return f"moved all {count} rows of every tenant to globex (rolled back)"

    def idor() -> str:
        _, rows = _rolled_back(
            app_dsn,
            "SELECT t.name, i.customer FROM app.invoices i "
            "JOIN app.tenants t ON t.id = i.tenant_id WHERE i.id = %s",
            (victim_row,),
        )
        if not rows:
            return "0 rows"
        return f"returns {rows[0][0]}'s invoice ({rows[0][1]})"

    def pooled() -> tuple[bool, str]:
        # A plain pool: acme's request changes its session, then globex's runs on it.
        with ConnectionPool(
            app_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, reset=pool_reset
        ) as pool:
            with pool.connection() as conn:
                pid = conn.info.backend_pid
                conn.execute("SET search_path = pg_catalog")
                conn.execute("SELECT pg_advisory_lock(4242)")  # a session-level lock
            with pool.connection() as conn:
                same = conn.info.backend_pid == pid
                path = conn.execute("SELECT current_setting('search_path')").fetchone()[0]
                locks = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid()"
                ).fetchone()[0]
        inherited = []
        if path == "pg_catalog":
            inherited.append("search_path = pg_catalog")
        if locks:
            inherited.append(f"acme's advisory lock ({locks} held)")
        if not same:
            return False, "globex got another server connection: nothing to inherit"
        if inherited:
            return True, f"globex's request inherits {' and '.join(inherited)}"
        return False, "globex's request inherits nothing (the pool reset it)"

    try:
        pooled_outcome = pooled()
    except psycopg.Error as exc:
        pooled_outcome = _refused(exc)
    return PlainOutcomes(_attempt(insert), _attempt(move), _attempt(idor), pooled_outcome)


def run_demo(admin_dsn: str, *, keep: bool = False) -> DemoResult:
    """Run every claim against the server at *admin_dsn* (a superuser DSN)."""
    claims: list[Claim] = []
    with _scratch(admin_dsn, keep) as (dsn, db, owner, app):
        app_dsn = _with(dsn, user=app)
        with admin_connect(dsn, autocommit=True) as admin:
            version = str(admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            _build(admin, db, owner, app)
            total = sum(n for _, n in TENANTS.values())

            # 1. The bug: a forgotten WHERE on a plain connection, before protection.
            with psycopg.connect(app_dsn, autocommit=True) as plain:
                leaked = plain.execute("SELECT count(*) FROM app.invoices").fetchone()[0]  # type: ignore[index]
            globex_id = admin.execute(
                "SELECT min(id) FROM app.invoices WHERE tenant_id = 2"
            ).fetchone()[0]  # type: ignore[index]
            # The other attacks on a plain connection, before protection, rolled back.
            plain_cells = measure_plain(app_dsn, globex_id)
            # The proof tooling, before and after: what a CI job would run.
            audits = [audit_database(admin, app_role=app, schemas=["app"])]
            probes = [probe_database(admin, app_role=app, schemas=["app"])]
            # The tenant root table is a tenant table too, keyed by its own id: without
            # this any tenant could list, rename or delete the others (TGA107, TGP116).
            protect(admin, [*TABLES, "app.tenants"], tenant_columns={"app.tenants": "id"})
            audits.append(audit_database(admin, app_role=app, schemas=["app"]))
            probes.append(probe_database(admin, app_role=app, schemas=["app"]))

        acme_rows = TENANTS[1][1]
        with TenantPool(app_dsn, min_size=1, max_size=1, tenant_kind="bigint") as pool:

            def guarded(
                tid: int | None, query: str, params: tuple[Any, ...] | None = None
            ) -> Callable[[], object]:
                def run() -> object:
                    if tid is None:
                        with pool.connection() as conn:
                            return conn.execute(query).fetchall()
                    with tenant(tid), pool.connection() as conn:
                        rows = conn.execute(query, params).fetchall()
                        return rows[0][0] if len(rows) == 1 else rows

                return run

            ok, seen = _attempt(guarded(1, "SELECT count(*) FROM app.invoices"))
            claims.append(
                Claim(
                    "forgotten WHERE returns only the tenant's rows",
                    f"leaks {leaked} rows of all {len(TENANTS)} tenants (before protect)",
                    f"acme sees {seen} rows",
                    leaked == total and ok and seen == str(acme_rows),
                )
            )

            def plain_no_setting() -> object:
                with psycopg.connect(app_dsn, autocommit=True) as plain:
                    return plain.execute("SELECT count(*) FROM app.invoices").fetchone()

            p_ok, p_seen = _attempt(plain_no_setting)
            g_ok, g_seen = _attempt(guarded(None, "SELECT count(*) FROM app.invoices"))
            claims.append(
                Claim(
                    "no tenant bound fails closed",
                    f"after protect, {p_seen}" if not p_ok else f"returned {p_seen}",
                    g_seen,
                    not p_ok and not g_ok,
                )
            )

            g_ok, g_seen = _attempt(
                guarded(
                    1,
                    "INSERT INTO app.invoices (tenant_id, amount_cents, customer) "
                    "VALUES (2, 1, 'planted by acme') RETURNING id",
                )
            )
            p_ok, p_seen = plain_cells.insert
            claims.append(
                Claim("insert into another tenant is refused", p_seen, g_seen, p_ok and not g_ok)
            )

            g_ok, g_seen = _attempt(
                guarded(1, "UPDATE app.invoices SET tenant_id = 2 RETURNING id")
            )
            p_ok, p_seen = plain_cells.move
            claims.append(
                Claim(
                    "UPDATE ... SET tenant_id = other (no WHERE) is refused",
                    p_seen,
                    g_seen,
                    p_ok and not g_ok,
                )
            )

            g_ok, g_seen = _attempt(
                guarded(1, "SELECT count(*) FROM app.invoices WHERE id = %s", (globex_id,))
            )
            p_ok, p_seen = plain_cells.idor
            claims.append(
                Claim(
                    "fetching another tenant's row by id (IDOR) finds nothing",
                    p_seen,
                    f"acme sees {g_seen} rows",
                    p_ok and p_seen.startswith("returns globex's") and g_ok and g_seen == "0",
                )
            )

            # Tenant 1 tries to leave session state on its pooled connection, on purpose:
            # the pool (session_state="refuse", the default) refuses each statement before
            # sending it (the refusals are explained under the table).
            refused: list[str] = []
            effects: set[str] = set()
            with tenant(1), pool.connection() as conn:
                pid = conn.info.backend_pid
                for stmt in ("SET search_path = pg_catalog", "SELECT pg_advisory_lock(4242)"):
                    try:
                        conn.execute(stmt)
                    except SessionStateRefused as exc:
                        effects.update(exc.effects)
                        refused.append(f"tenant 1, {stmt!r}: {first_line(exc)}")
            with tenant(2), pool.connection() as conn:
                same = conn.info.backend_pid == pid
                path = conn.execute("SELECT current_setting('search_path')").fetchone()[0]  # type: ignore[index]
                locks = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid()"
                ).fetchone()[0]  # type: ignore[index]
            p_ok, p_seen = plain_cells.pooled
            claims.append(
                Claim(
                    "session state never reaches the next tenant on a pooled connection",
                    f"{p_seen} (plain psycopg_pool)",
                    f"refused before sending ({', '.join(sorted(effects))}); next tenant clean",
                    p_ok
                    and len(refused) == 2
                    and {"search_path", "advisory_lock"} <= effects
                    and same
                    and locks == 0
                    and path != "pg_catalog",
                )
            )
    claims.append(
        Claim(
            "tenantguard audit finds nothing to fix",
            f"{_counts(audits[0])} before protect",
            f"{_counts(audits[1])} ({len(audits[1].rules)} rules)",
            bool(audits[0].at_or_above(Severity.HIGH)) and not audits[1].findings,
        )
    )
    leaks = [f for f in probes[0].findings if f.rule.code < "TGP190"]
    claims.append(
        Claim(
            "tenantguard probe: no attack gets through",
            f"{len(leaks)} attacks got through before protect",
            f"{_counts(probes[1])} in {probes[1].meta['attempts']} attempts",
            bool(leaks) and not probes[1].findings,
        )
    )
    return DemoResult(claims, version, refused)


def _counts(report: Report) -> str:
    if not report.findings:
        return "0 findings"
    worst = max(f.level for f in report.findings)
    return f"{len(report.findings)} findings (worst: {worst})"
