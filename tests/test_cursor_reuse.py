"""``conn.execute()`` reuses its cursor only when nobody could tell (see ``_reuse.py``)."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.adapt import Loader
from psycopg.rows import dict_row

from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.drivers.psycopg import _reuse, fast_path

# What only the fast path does (cursor reuse, the prepared binding): checked where it is on;
# the pass with TENANTGUARD_FAST_PATH=0 runs the rest of this module on the public API.
FAST_ONLY = pytest.mark.skipif(
    not fast_path()[0], reason=f"tests the fast path, which is off: {fast_path()[1]}"
)


COUNT = "SELECT count(*) FROM app.invoices"
ROWS = "SELECT tenant_id FROM app.invoices ORDER BY id"


class Shout(Loader):
    """An int4 loader nobody would register by accident."""

    def load(self, data: bytes | bytearray | memoryview) -> str:
        return f"int:{bytes(data).decode()}"


@pytest.fixture(scope="module")
def pool(saas):  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state="reset") as p:
        yield p


@FAST_ONLY
def test_reuse_is_active_on_this_interpreter(pool) -> None:  # type: ignore[no-untyped-def]
    assert _reuse.ENABLED
    with tenant(1), pool.connection() as conn:
        first = id(conn.execute(COUNT))
        assert id(conn.execute(COUNT)) == first  # the first was dropped: reused


def test_a_cursor_still_held_is_never_reused(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(2), pool.connection() as conn:
        c1 = conn.execute("SELECT 1")
        c2 = conn.execute("SELECT 2")
        assert c1 is not c2
        assert c1.fetchall() == [(1,)] and c2.fetchall() == [(2,)]


def test_iterating_a_result_while_running_another_statement(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(3), pool.connection() as conn:
        seen = []
        for (tid,) in conn.execute(ROWS):
            seen.append((tid, conn.execute(COUNT).fetchone()[0]))
        assert seen == [(3, 6)] * 6


def test_what_a_new_cursor_gets_is_given_again(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1), pool.connection() as conn:
        cur = conn.execute(COUNT)
        cur.row_factory = dict_row  # changed on the returned cursor, then dropped
        cur.arraysize = 7
        del cur
        again = conn.execute("SELECT 5 AS n")
        assert again.fetchone() == (5,) and again.arraysize == 1
        conn.execute("SELECT 5 AS n", binary=True)
        text = conn.execute("SELECT 5 AS n")
        assert text.format == psycopg.pq.Format.TEXT
        assert text.pgresult is not None and text.pgresult.fformat(0) == 0
        binary = conn.execute("SELECT 5 AS n", binary=True)
        assert binary.pgresult is not None and binary.pgresult.fformat(0) == 1
        del text, binary
        conn.row_factory = dict_row  # the connection's own row factory is followed
        try:
            assert conn.execute("SELECT 5 AS n").fetchone() == {"n": 5}
        finally:
            conn.row_factory = psycopg.rows.tuple_row
        assert conn.execute("SELECT 5 AS n").fetchone() == (5,)


def test_adapters_registered_on_a_dropped_cursor_do_not_stick(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1), pool.connection() as conn:
        cur = conn.execute("SELECT 1")
        cur.adapters.register_loader("int4", Shout)
        assert cur.execute("SELECT 1").fetchone() == ("int:1",)
        del cur
        assert conn.execute("SELECT 1").fetchone() == (1,)


@FAST_ONLY
def test_adapters_registered_on_the_connection_are_seen(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as p:
        with tenant(1), p.connection() as conn:
            kept = id(conn.execute("SELECT 1"))
            conn.adapters.register_loader("int4", Shout)
            conn.cursor().close()  # a new cursor resets the connection's copy-on-write flags
            cur = conn.execute("SELECT 1")
            assert cur.fetchone() == ("int:1",) and id(cur) != kept
            # Sanity: the pool's connection is discarded with the pool, not reused elsewhere.


def test_a_closed_cursor_is_replaced(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(2), pool.connection() as conn:
        conn.execute("SELECT 1").close()
        assert conn.execute(COUNT).fetchone() == (4,)


def test_errors_leave_the_kept_cursor_usable(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(2), pool.connection() as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        assert conn.execute(COUNT).fetchone() == (4,)


def test_a_cursor_kept_past_the_lease_keeps_its_rows(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1), pool.connection() as conn:
        kept = conn.execute(ROWS)
    with tenant(3), pool.connection() as conn2:
        assert conn2 is conn  # one connection in the pool
        assert conn.execute(COUNT) is not kept
    assert kept.fetchall() == [(1,), (1,)]


@FAST_ONLY
def test_no_rows_stay_attached_to_an_idle_connection(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1), pool.connection() as conn:
        assert conn.execute(ROWS).fetchall() == [(1,), (1,)]
    kept = conn._tg_reused_cursor
    assert kept is not None  # kept for the next lease...
    assert kept.pgresult is None and kept._tx.pgresult is None  # ...without tenant 1's rows
    assert kept._results == [] and kept._query is None  # ...nor its parameters
    kept_id = id(kept)
    del kept  # (a reference held here would rightly prevent the reuse)
    with tenant(2), pool.connection() as conn2:
        cur = conn2.execute(ROWS)
        assert id(cur) == kept_id and cur.fetchall() == [(2,)] * 4


def test_tenants_never_see_each_others_rows_through_the_kept_cursor(pool) -> None:  # type: ignore[no-untyped-def]
    for tid in (1, 2, 3, 2, 1, 3) * 5:
        with tenant(tid), pool.connection() as conn:
            rows = conn.execute(ROWS).fetchall()
        assert rows and {r[0] for r in rows} == {tid}
    gc.collect()


@FAST_ONLY
def test_async_pool_reuses_under_the_same_rules(saas) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as p:
            with tenant(3):
                async with p.connection() as conn:
                    first = id(await conn.execute(COUNT))
                    assert id(await conn.execute(COUNT)) == first
                    c1 = await conn.execute("SELECT 1")
                    c2 = await conn.execute("SELECT 2")
                    assert c1 is not c2
                    assert await c1.fetchall() == [(1,)] and await c2.fetchall() == [(2,)]
            with tenant(1):
                async with p.connection() as conn:
                    assert await (await conn.execute(ROWS)).fetchall() == [(1,), (1,)]
            assert conn._tg_reused_cursor is not None and conn._tg_reused_cursor.pgresult is None

    asyncio.run(main())


@FAST_ONLY
def test_the_free_count_is_measured_not_assumed(pool) -> None:  # type: ignore[no-untyped-def]
    # Measured on the attribute, as the checks count: a constant (3, true of 3.11-3.13
    # counting a local name) makes a cursor held once look free on CPython 3.14.
    with tenant(1), pool.connection() as conn:
        conn.execute(COUNT).fetchone()
        free = sys.getrefcount(
            conn._tg_reused_cursor
        )  # (not inside assert: pytest keeps temporaries)
        assert free == _reuse.REFS_WHEN_FREE
        held = conn._tg_reused_cursor
        assert _reuse.reusable(conn, False) is None  # exactly one more holder: seen
        del held
        assert _reuse.reusable(conn, False) is conn._tg_reused_cursor
        held = conn.execute(COUNT)
    assert conn._tg_reused_cursor is None  # held once past the lease: forgotten at checkin
    assert held.fetchone() == (2,)


NOW = "SELECT now()"  # one query object, as a constant in application code is


@FAST_ONLY
@pytest.mark.parametrize("in_transaction", [True, False])
def test_a_previous_lease_s_settings_never_shape_the_next_tenant_s_results(  # type: ignore[no-untyped-def]
    pool, in_transaction
) -> None:
    # psycopg builds a cursor's loaders (time zone, DateStyle, encoding) for the
    # settings of the moment and keeps them while the cursor runs the same query
    # object; the kept cursor must not carry tenant 1's into tenant 2's lease.
    tokyo = ZoneInfo("Asia/Tokyo")
    with tenant(1), pool.connection() as conn:
        if in_transaction:  # transaction-local: gone at COMMIT, the checkin is clean
            with conn.transaction():
                conn.execute("SET LOCAL TimeZone = 'Asia/Tokyo'")
                assert conn.execute(NOW).fetchone()[0].tzinfo == tokyo
        else:  # the session's: the checkin guard resets it
            conn.execute("SET TimeZone = 'Asia/Tokyo'")
            assert conn.execute(NOW).fetchone()[0].tzinfo == tokyo
    with tenant(2), pool.connection() as conn:
        assert conn.info.timezone != tokyo  # SET LOCAL ended; SET was reset at checkin
        assert conn.execute(NOW).fetchone()[0].tzinfo == conn.info.timezone
    kept = conn._tg_reused_cursor  # a fast-path-only lease keeps the Transformer for the next
    assert kept is not None and kept._last_query is NOW


def test_a_weak_reference_kept_past_the_lease_never_sees_the_next_tenant(pool) -> None:  # type: ignore[no-untyped-def]
    # A weak reference is not in the reference count; a new cursor per statement
    # would be gone by now, so the kept one must be too.
    with tenant(1), pool.connection() as conn:
        plain = weakref.ref(conn.execute(ROWS))  # the same object as psycopg's own
    with tenant(2), pool.connection() as conn:
        assert conn.execute(ROWS).fetchall() == [(2,)] * 4
        assert plain() is None
    with tenant(1), pool.connection() as conn:
        watched: weakref.WeakSet[object] = weakref.WeakSet([conn.execute(ROWS)])
    with tenant(3), pool.connection() as conn:
        assert conn.execute(ROWS).fetchall() == [(3,)] * 6
        assert not watched


def test_a_failing_checkin_never_returns_the_connection_unguarded(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.drivers.psycopg import _pool

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as p:
        with tenant(1), p.connection() as conn:
            conn.execute("SELECT 1")

        def broken(conn):  # type: ignore[no-untyped-def]
            raise AttributeError("a psycopg internal moved")

        monkeypatch.setattr(_pool, "release_cursor", broken)
        with pytest.raises(AttributeError), tenant(1), p.connection() as first:
            first.execute("SET app.tenant_id = '2'")  # session state the guard must reset
        assert first.closed  # closed, so psycopg_pool replaces it
        monkeypatch.undo()
        with tenant(1), p.connection() as conn:
            assert conn is not first
            assert conn.execute(COUNT).fetchone() == (2,)
