"""The fourteenth adversarial review, each attack next to its control.

1. ``amap = conn.adapters`` kept past the lease, then ``amap.types = Planted(...)``: the
   checkout read ``a.types._registry`` before comparing ``a.types`` by identity, so a planted
   property ran in tenant 2's thread (sync: read its rows; async: planted a row factory and
   put the real registry back, so the connection was kept). Now identity comes first.
2. ``sql.SQL(EvilStr(...))`` as the query on the fast path (passed as is): psycopg rendered
   it through the ``str`` subclass's ``encode()`` into a ``bytes`` subclass and kept it as a
   key of its process-wide query cache, compared in tenant 2's later lookup. Now only
   ``str``, ``bytes`` and ``sql.Composed`` (which renders to exact bytes) pass as they are.
3. ``cur.adapters.types = Planted(...)`` on the cursor the next lease reuses: the reuse
   check read ``mine.types._registry`` before checking its class. Now the class comes first.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from psycopg.sql import SQL, Composed

from attack_payloads import DEFENDED, FAST_ONLY, in_thread, psycopgs_own_conversion, spy
from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.drivers.psycopg import (
    _connection,
    _connection_async,
    _internals,
    _pool,
    _pool_async,
    _reuse,
)


def _old_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the checkout reads the registry's table before the registry's identity."""
    real = _internals.adapters_changed

    def changed(conn: Any) -> bool:
        rec = conn._tg_adapters
        if rec is not None and conn._adapters.types._registry is not rec[7]:
            return True
        return real(conn)

    for m in (_pool, _pool_async, _internals):
        monkeypatch.setattr(m, "adapters_changed", changed)


def _old_kept_types(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: ``sql.SQL`` passes the fast path as it is."""
    for m in (_connection, _connection_async):
        monkeypatch.setattr(m, "KEPT_AS_IS", frozenset({str, bytes, Composed, SQL}))
    # (and psycopg's own conversion: the fifteenth review's exact bytes stop it too)
    psycopgs_own_conversion(monkeypatch)


def _old_reuse_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the reuse check reads the cursor registry's table before its class."""
    real = _reuse.reusable

    def reusable(conn: Any, binary: bool) -> Any:
        if conn._tg_reused_cursor is not None:  # (no local name: the count stays)
            conn._tg_reused_cursor._adapters.types._registry  # noqa: B018
        return real(conn, binary)

    monkeypatch.setattr(_reuse, "reusable", reusable)
    # (and the fifteenth review's checks before it: the registry's class and attributes)
    monkeypatch.setattr(_reuse, "TypesRegistry", _PlantedCursorTypes)
    monkeypatch.setattr(_reuse, "TYPES_ATTRIBUTES", 10**9)


ROWS = "SELECT tenant_id, amount FROM app.invoices ORDER BY amount"


class _PlantedTypes:
    """Set as ``conn.adapters.types`` on a map kept from tenant 1's lease. The checkout's
    adapters_changed() reads ``a.types._registry`` before comparing ``a.types`` by identity:
    this property runs in the next lease's thread, after start_lease (as its holder)."""

    def __init__(self, real: Any, act: Any) -> None:
        self._real = real
        self._act = act

    @property
    def _registry(self) -> Any:
        self._act()
        return self._real._registry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@DEFENDED
def test_planted_types_registry_runs_in_next_checkout_sync(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _old_checkout(monkeypatch)
    loot: list[Any] = []
    kept: list[Any] = []
    main = threading.get_ident()
    busy: list[bool] = []

    def act() -> None:
        if kept and not busy and threading.get_ident() != main:
            busy.append(True)
            loot.extend(kept[0].execute(ROWS).fetchall())  # as tenant 2, its holder

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept.append(conn)
            amap = conn.adapters  # a public attribute, kept past the lease
        # after the lease (tenant 1's code, any thread): plant on the kept map
        amap.types = _PlantedTypes(amap.types, act)
        rows: list[Any] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:
                rows.extend(conn.execute(ROWS).fetchall())

        in_thread(tenant2)
    assert {r[0] for r in rows} == {2}
    if defended:
        assert loot == []
    else:
        assert loot and {r[0] for r in loot} == {2}


@DEFENDED
def test_planted_types_registry_runs_in_next_checkout_async(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _old_checkout(monkeypatch)
    loot: list[Any] = []
    kept: list[Any] = []

    async def main() -> list[Any]:
        first: list[Any] = []
        amaps: list[Any] = []
        real: list[Any] = []

        def act() -> None:
            task = asyncio.current_task()
            if kept and first and task is not first[0]:
                kept[0].row_factory = spy(loot)  # in tenant 2's task: "the holder"
                kept.clear()
                amaps[0].types = real[0]  # restored: ``a.types is rec[8]`` then holds

        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:

            async def tenant1() -> None:
                first.append(asyncio.current_task())
                with tenant(1):
                    async with pool.connection() as conn:
                        kept.append(conn)
                        amaps.append(conn.adapters)

            async def tenant2() -> list[Any]:
                with tenant(2):
                    async with pool.connection() as conn:
                        cur = await conn.execute(ROWS)
                        return await cur.fetchall()

            await asyncio.create_task(tenant1())
            real.append(amaps[0].types)
            amaps[0].types = _PlantedTypes(amaps[0].types, act)
            return await asyncio.create_task(tenant2())

    rows = asyncio.run(main())
    assert {r[0] for r in rows} == {2}
    if defended:
        assert loot == []
    else:
        assert loot and {r[0] for r in loot} == {2}


BY_AMOUNT = "SELECT tenant_id, amount FROM app.invoices WHERE amount > %s ORDER BY amount"


def _evil_sql(target: str, act: Any) -> Any:
    """``sql.SQL`` (exact type: the fast path's KEPT_AS_IS hands it to psycopg as is) over a
    ``str`` subclass whose ``encode()`` returns a ``bytes`` subclass hashing like *target*'s
    bytes. psycopg's process-wide ``_query2pg`` lru_cache keeps it as a key; the next
    lookup of *target* (any lease, any thread) compares with it and runs ``__eq__``."""
    from psycopg import sql

    tb = target.encode()

    class EvilBytes(bytes):
        def __hash__(self) -> int:
            return hash(tb)

        def __eq__(self, other: object) -> bool:
            act()
            return False

        __ne__ = bytes.__ne__

    class EvilStr(str):
        def encode(self, *a: Any, **k: Any) -> bytes:  # type: ignore[override]
            return EvilBytes(str.encode(self, *a, **k))

    return sql.SQL(EvilStr("SELECT tenant_id, amount FROM app.invoices WHERE amount > %s"))


def _evict_query_cache(conn: Any) -> None:
    """Push every earlier entry out of psycopg's 128-entry _query2pg cache (so the planted
    key is the first one with the target's hash): ordinary parameterised statements."""
    for i in range(140):
        conn.execute(f"SELECT %s::int + {i}", (i,)).fetchall()


@FAST_ONLY
@DEFENDED
def test_sql_over_str_subclass_plants_query_cache_key_sync(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _old_kept_types(monkeypatch)
    loot: list[Any] = []
    kept: list[Any] = []
    main = threading.get_ident()
    ran: list[int] = []

    def act() -> None:
        if kept and not ran and threading.get_ident() != main:
            ran.append(threading.get_ident())
            kept[0].row_factory = spy(loot)  # in tenant 2's thread: its lease's holder

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept.append(conn)
            _evict_query_cache(conn)
            conn.execute(_evil_sql(BY_AMOUNT, act), (0,)).fetchall()
        rows: list[Any] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:
                conn.execute(BY_AMOUNT, (0,)).fetchall()  # any thread, any later lease
                rows.extend(conn.execute(ROWS).fetchall())

        in_thread(tenant2)
    assert {r[0] for r in rows} == {2}
    if defended:
        assert ran == [] and loot == []
    else:
        assert ran and {r[0] for r in loot} == {2}


@FAST_ONLY
@DEFENDED
def test_sql_over_str_subclass_plants_query_cache_key_async(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _old_kept_types(monkeypatch)
    loot: list[Any] = []
    kept: list[Any] = []

    async def main() -> list[Any]:
        first: list[Any] = []

        def act() -> None:
            task = asyncio.current_task()
            if kept and first and task is not first[0]:
                kept[0].row_factory = spy(loot)
                kept.clear()

        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:

            async def tenant1() -> None:
                first.append(asyncio.current_task())
                with tenant(1):
                    async with pool.connection() as conn:
                        kept.append(conn)
                        for i in range(140):
                            await (await conn.execute(f"SELECT %s::int + {i}", (i,))).fetchall()
                        await (await conn.execute(_evil_sql(BY_AMOUNT, act), (0,))).fetchall()

            async def tenant2() -> list[Any]:
                with tenant(2):
                    async with pool.connection() as conn:
                        await (await conn.execute(BY_AMOUNT, (0,))).fetchall()
                        cur = await conn.execute(ROWS)
                        return await cur.fetchall()

            await asyncio.create_task(tenant1())
            return await asyncio.create_task(tenant2())

    rows = asyncio.run(main())
    assert {r[0] for r in rows} == {2}
    if defended:
        assert loot == []
    else:
        assert loot and {r[0] for r in loot} == {2}


class _PlantedCursorTypes:
    """Set as the reused cursor's ``cur.adapters.types`` during tenant 1's own lease (no
    reference kept to the cursor or its map). The next lease's ``_reuse.reusable`` ->
    ``reusable`` reads ``mine.types._registry`` before ``type(mine.types)``."""

    def __init__(self, registry: Any, act: Any) -> None:
        self._reg = registry
        self._act = act

    @property
    def _registry(self) -> Any:
        self._act()
        return self._reg


@FAST_ONLY
@DEFENDED
def test_planted_cursor_types_runs_in_next_reuse_check_sync(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _old_reuse_check(monkeypatch)
    loot: list[Any] = []
    kept: list[Any] = []
    main = threading.get_ident()
    ran: list[int] = []

    def act() -> None:
        if kept and not ran and threading.get_ident() != main:
            ran.append(threading.get_ident())
            kept[0].row_factory = spy(loot)  # tenant 2's holder: allowed

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept.append(conn)
            cur = conn.execute("SELECT 1")
            cur.fetchall()
            cur.adapters.types = _PlantedCursorTypes(cur.adapters.types._registry, act)
            del cur
        rows: list[Any] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:
                rows.extend(conn.execute(ROWS).fetchall())  # its first and only statement

        in_thread(tenant2)
    assert {r[0] for r in rows} == {2}
    if defended:
        assert ran == [] and loot == []
    else:
        assert ran and {r[0] for r in loot} == {2}


@FAST_ONLY
@DEFENDED
def test_planted_cursor_types_runs_in_next_reuse_check_async(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _old_reuse_check(monkeypatch)
    loot: list[Any] = []
    kept: list[Any] = []

    async def main() -> list[Any]:
        first: list[Any] = []

        def act() -> None:
            task = asyncio.current_task()
            if kept and first and task is not first[0]:
                kept[0].row_factory = spy(loot)
                kept.clear()

        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:

            async def tenant1() -> None:
                first.append(asyncio.current_task())
                with tenant(1):
                    async with pool.connection() as conn:
                        kept.append(conn)
                        cur = await conn.execute("SELECT 1")
                        await cur.fetchall()
                        cur.adapters.types = _PlantedCursorTypes(cur.adapters.types._registry, act)
                        del cur

            async def tenant2() -> list[Any]:
                with tenant(2):
                    async with pool.connection() as conn:
                        cur = await conn.execute(ROWS)
                        return await cur.fetchall()

            await asyncio.create_task(tenant1())
            return await asyncio.create_task(tenant2())

    rows = asyncio.run(main())
    assert {r[0] for r in rows} == {2}
    if defended:
        assert loot == []
    else:
        assert loot and {r[0] for r in loot} == {2}
