"""The twelfth adversarial review, each attack next to its control.

1. The fast path left the caller's own query object on the reused cursor
   (``_last_query``); psycopg reads it (``not self._last_query``) at the start of the
   cursor's next statement, the next lease's. A ``str`` subclass's ``__bool__`` ran in
   tenant 2's thread: it set ``row_factory`` (tenant 2's rows went through tenant 1's
   function) or raised (every later lease on the connection failed). Now the fast path
   sends, and leaves, only exact ``str`` or ``bytes``.
2. A dumper registered on tenant 1's own cursor with an ``int``-subclass ``oid``: psycopg's
   prepared-statement cache (per connection, across leases) kept the oid object in its
   key, and tenant 2's lookup of the same statement ran its ``__eq__`` in tenant 2's
   thread. Now the cache takes only exact keys (the statement with such an oid is
   refused before anything is sent); without psycopg's internals the pool's connections
   prepare nothing, so psycopg keeps no keys.

The review's other two findings are limits, documented in the README ("What the pool
model does not stop"): Python code that runs while another request's lease is current
(a finalizer on garbage, a callback) acts as that request, and ``object.__setattr__`` on
a tenant context is in-process tampering with the application's own objects.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.adapt import Dumper

from attack_payloads import DEFENDED, FAST_ONLY, in_thread, spy
from tenantguard import TenantPool, tenant
from tenantguard.drivers.psycopg import _connection, _internals, _pool, _pool_async

ROWS = "SELECT tenant_id, amount FROM app.invoices ORDER BY amount"
BY_AMOUNT = "SELECT tenant_id, amount FROM app.invoices WHERE amount > %s ORDER BY amount"


@FAST_ONLY  # (the slow path renders every query: it never had this)
@DEFENDED
def test_the_callers_query_object_never_runs_in_the_next_lease(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:  # the control: the fast path sends the caller's object as it is
        monkeypatch.setattr(_connection, "rendered", lambda query, cursor: query)
    loot: list[Any] = []
    ran: list[str] = []
    kept: list[Any] = []

    class Sticky(str):
        armed = False

        def __bool__(self) -> bool:  # psycopg: ``not self._last_query`` in _start_query
            if Sticky.armed:
                Sticky.armed = False
                ran.append("next lease")
                kept[0].row_factory = spy(loot)  # in tenant 2's thread: "the holder"
            return True

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept.append(conn)
            conn.execute(Sticky("SELECT 1")).fetchall()
        Sticky.armed = True
        rows: list[Any] = []

        def tenant2() -> None:  # tenant 2's ordinary request, in another worker thread
            with tenant(2), pool.connection() as conn:
                conn.execute("SELECT 1").fetchall()
                rows.extend(conn.execute(ROWS).fetchall())

        in_thread(tenant2)
    assert {r[0] for r in rows} == {2}
    if defended:
        assert ran == [] and loot == []
    else:
        assert ran == ["next lease"] and {r[0] for r in loot} == {2}


@FAST_ONLY
@DEFENDED
def test_a_query_object_that_raises_breaks_no_later_lease(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        monkeypatch.setattr(_connection, "rendered", lambda query, cursor: query)

    class Poison(str):
        def __bool__(self) -> bool:
            raise RuntimeError("tenant 1 says no")

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute(Poison("SELECT 1")).fetchall()
        failures = 0
        for t in (2, 3, 2):
            with tenant(t), pool.connection() as conn:
                try:
                    conn.execute(ROWS).fetchall()
                except RuntimeError:
                    failures += 1
    assert failures == (0 if defended else 3)


@DEFENDED
def test_an_oid_planted_in_the_prepared_cache_never_runs_in_the_next_lease(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:  # the control: psycopg's own cache, psycopg's default threshold
        monkeypatch.setattr(_internals, "exact_prepared", lambda conn, **kw: False)
    loot: list[Any] = []
    ran: list[str] = []
    armed: list[bool] = []
    kept: list[Any] = []
    small_int = psycopg.postgres.types["int2"].oid  # what tenant 2's parameter dumps as

    class Planted(int):
        __hash__ = int.__hash__

        def __eq__(self, other: object) -> bool:  # psycopg's dict lookup
            if armed and not ran:
                ran.append("next lease")
                kept[0].row_factory = spy(loot)
            return int.__eq__(self, other)

    class Mine:
        pass

    class MineDumper(Dumper):
        oid = Planted(small_int)

        def dump(self, obj: Any) -> bytes:
            return b"0"

    refused = False
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept.append(conn)
            cur = conn.cursor()  # tenant 1's own cursor and its own adapters
            cur.adapters.register_dumper(Mine, MineDumper)
            try:
                cur.execute(BY_AMOUNT, (Mine(),))
            except TypeError as exc:
                refused = "type oid" in str(exc)
            cur.close()
            armed.append(True)
        rows: list[Any] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:
                conn.execute(BY_AMOUNT, (0,)).fetchall()
                rows.extend(conn.execute(ROWS).fetchall())

        in_thread(tenant2)
    assert {r[0] for r in rows} == {2}
    if defended:
        assert ran == [] and loot == []
        assert refused is _internals.FAST  # (the fallback prepares nothing: nothing to refuse)
    else:
        assert ran == ["next lease"] and {r[0] for r in loot} == {2}


@FAST_ONLY
@DEFENDED
def test_a_replaced_prepared_cache_is_not_handed_to_the_next_lease(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    from psycopg._preparing import PrepareManager

    if not defended:
        for m in (_pool, _pool_async, _internals):
            monkeypatch.setattr(m, "adapters_changed", lambda conn: False)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn._prepared = PrepareManager()  # psycopg's own: keys unchecked
        with tenant(2), pool.connection() as conn:
            exact = type(conn._prepared) is not PrepareManager
        kinds = pool.guard_stats.by_kind
    assert exact is defended
    assert (kinds["adapters"] == 1) is defended


def test_the_fallback_prepares_nothing(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Without psycopg's internals the pool's connections keep no prepared-statement keys."""
    monkeypatch.setattr(_internals, "FAST", False)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            assert conn.prepare_threshold is None
            for _ in range(6):
                conn.execute(BY_AMOUNT, (0,)).fetchall()
            prepared = conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE name LIKE '_pg3%%'"
            ).fetchone()
    assert prepared == (0,)  # psycopg prepared nothing
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, kwargs={"prepare_threshold": 2}) as pool:
        with tenant(1), pool.connection() as conn:
            assert conn.prepare_threshold == 2  # the caller's choice: psycopg's own cache
