"""The fifteenth adversarial review, each attack next to its control (psycopg's own
``_ensure_bytes``; no limit on the reused cursor map's attributes).

1. psycopg's process-wide ``_query2pg`` lru_cache, poisoned from tenant 1's lease through
   psycopg's public base cursor (``psycopg.Cursor(conn).execute(EvilBytes(...), params)``;
   the fourteenth review's fix only covers the tenant cursor's fast path). The key is a
   ``bytes`` subclass hashing like tenant 2's statement and equal to it: tenant 2's later
   ``conn.execute(BY_AMOUNT, (0,))`` (any pool, any connection, any thread) is converted
   to tenant 1's SQL and runs it, under tenant 2's binding; ``__eq__`` runs in tenant 2's
   thread. Both paths (fast path on and off), sync and async.
2. ``cur.adapters.get_dumper = evil`` (an instance attribute on the public adapters map of
   the cursor the next lease reuses): ``_reuse.reusable`` compares the tables and the
   types registry but not the map's instance ``__dict__``; psycopg's C Transformer looks
   ``get_dumper`` up as an attribute, so it runs in tenant 2's thread on its first
   parameterised statement (fast path only: cursor reuse).
3. ``cur.adapters.types.get = evil`` on the same cursor: runs in tenant 2's thread when it
   reads ``cur.description`` (``dict_row``/``namedtuple_row`` do) or dumps a list.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from attack_payloads import DEFENDED, FAST_ONLY, in_thread, psycopgs_own_conversion, spy
from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.drivers.psycopg import _reuse
from test_pgbouncer import bouncer, client_kw, via  # noqa: F401 (bouncer: the fixture)


def _unlimited_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the reuse check takes a map or registry with any added attribute."""
    monkeypatch.setattr(_reuse, "MAP_ATTRIBUTES", 10**9)
    monkeypatch.setattr(_reuse, "TYPES_ATTRIBUTES", 10**9)


ROWS = "SELECT tenant_id, amount FROM app.invoices ORDER BY amount"
BY_AMOUNT = "SELECT tenant_id, amount FROM app.invoices WHERE amount > %s ORDER BY amount"
# What tenant 2's BY_AMOUNT becomes: an UPDATE of its rows it never sent (a no-op write,
# so the module's data stays), reporting how many rows it touched.
FORGED = (
    b"WITH u AS (UPDATE app.invoices SET amount = amount WHERE amount > %s "
    b"RETURNING tenant_id) SELECT 666::bigint, count(*)::numeric FROM u"
)


@pytest.fixture(autouse=True)
def _clean_query_cache() -> Iterator[None]:
    """The planted key is process-wide: drop it after each test (psycopg's own cache)."""
    from psycopg import _queries

    _queries._query2pg.cache_clear()
    yield
    _queries._query2pg.cache_clear()


def _evil_query(target: str, act: Any) -> bytes:
    """Tenant 1's SQL as a ``bytes`` subclass that hashes like *target* and equals it."""
    tb = target.encode()

    class EvilBytes(bytes):
        def __hash__(self) -> int:
            return hash(tb)

        def __eq__(self, other: object) -> bool:
            act()
            return bytes.__eq__(tb, other) if isinstance(other, bytes) else False  # type: ignore[arg-type]

        __ne__ = bytes.__ne__

    return EvilBytes(FORGED)


def _evict(conn: Any) -> None:
    """Push earlier entries out of psycopg's 128-entry cache (ordinary statements)."""
    for i in range(140):
        conn.execute(f"SELECT %s::int + {i}", (i,)).fetchall()


@DEFENDED
def test_query_cache_poisoned_by_base_cursor_runs_sql_in_next_lease_sync(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        psycopgs_own_conversion(monkeypatch)
    main = threading.get_ident()
    ran: list[int] = []

    def act() -> None:
        if threading.get_ident() != main:
            ran.append(threading.get_ident())

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            _evict(conn)
            # psycopg's public cursor class on the leased connection: marked unscreened (the
            # connection is discarded at checkin), but the key stays in psycopg's cache.
            # (The key is kept when the query is converted, before anything is sent: the
            # unbound UPDATE itself then fails on the server.)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                psycopg.Cursor(conn).execute(_evil_query(BY_AMOUNT, act), (0,))
        rows: list[Any] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:  # a new connection: the old one is gone
                rows.extend(conn.execute(BY_AMOUNT, (0,)).fetchall())

        in_thread(tenant2)
        assert pool.guard_stats.by_kind["unscreened_sql"] == 1
    assert bool(ran) is not defended  # tenant 1's __eq__ ran in tenant 2's thread
    assert (rows == [(666, 4)]) is not defended  # tenant 2 ran tenant 1's UPDATE


@DEFENDED
def test_query_cache_poisoned_by_base_cursor_runs_sql_in_next_lease_async(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        psycopgs_own_conversion(monkeypatch)
    ran: list[Any] = []

    async def main() -> list[Any]:
        first: list[Any] = []

        def act() -> None:
            task = asyncio.current_task()
            if first and task is not first[0]:
                ran.append(task)

        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:

            async def tenant1() -> None:
                first.append(asyncio.current_task())
                with tenant(1):
                    async with pool.connection() as conn:
                        for i in range(140):
                            await (await conn.execute(f"SELECT %s::int + {i}", (i,))).fetchall()
                        with pytest.raises(psycopg.errors.InsufficientPrivilege):
                            await psycopg.AsyncCursor(conn).execute(
                                _evil_query(BY_AMOUNT, act), (0,)
                            )

            async def tenant2() -> list[Any]:
                with tenant(2):
                    async with pool.connection() as conn:
                        return await (await conn.execute(BY_AMOUNT, (0,))).fetchall()

            await asyncio.create_task(tenant1())
            return await asyncio.create_task(tenant2())

    rows = asyncio.run(main())
    assert bool(ran) is not defended
    assert (rows == [(666, 4)]) is not defended


def _plant_get_dumper(cur: Any, act: Any) -> None:
    """An instance attribute on the cursor's public adapters map, holding no reference to the
    cursor or the map (their reference counts stay those of a free cursor); delegating to
    psycopg's global map, so the statement still works."""
    glob = psycopg.adapters

    def get_dumper(cls: Any, fmt: Any) -> Any:
        act()
        return glob.get_dumper(cls, fmt)

    cur.adapters.get_dumper = get_dumper


@FAST_ONLY
@DEFENDED
def test_reused_cursor_adapters_get_dumper_runs_in_next_lease_sync(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _unlimited_attributes(monkeypatch)
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
            cur = conn.execute("SELECT 1")
            cur.fetchall()
            _plant_get_dumper(cur, act)
            del cur
        rows: list[Any] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:
                conn.execute(BY_AMOUNT, (0,)).fetchall()  # any parameterised statement
                rows.extend(conn.execute(ROWS).fetchall())

        in_thread(tenant2)
    assert bool(ran) is not defended
    assert {r[0] for r in rows} == {2}
    assert bool(loot and {r[0] for r in loot} == {2}) is not defended  # copied by the spy


@FAST_ONLY
@DEFENDED
def test_reused_cursor_adapters_get_dumper_runs_in_next_lease_async(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _unlimited_attributes(monkeypatch)
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
                        _plant_get_dumper(cur, act)
                        del cur

            async def tenant2() -> list[Any]:
                with tenant(2):
                    async with pool.connection() as conn:
                        await (await conn.execute(BY_AMOUNT, (0,))).fetchall()
                        return await (await conn.execute(ROWS)).fetchall()

            await asyncio.create_task(tenant1())
            return await asyncio.create_task(tenant2())

    rows = asyncio.run(main())
    assert {r[0] for r in rows} == {2}
    assert bool(loot and {r[0] for r in loot} == {2}) is not defended


@FAST_ONLY
@DEFENDED
def test_reused_cursor_types_get_runs_in_next_lease_sync(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _unlimited_attributes(monkeypatch)
    main = threading.get_ident()
    ran: list[int] = []
    glob = psycopg.adapters.types

    def get(key: Any) -> Any:
        if threading.get_ident() != main:
            ran.append(threading.get_ident())
        return glob.get(key)

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            cur = conn.execute("SELECT 1")
            cur.fetchall()
            cur.adapters.types.get = get  # the registry's class and table are unchanged
            del cur
        names: list[str] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:
                cur = conn.execute(ROWS)
                names.extend(d.name for d in cur.description)  # as dict_row does

        in_thread(tenant2)
    assert names == ["tenant_id", "amount"]
    assert bool(ran) is not defended  # tenant 1's function ran in tenant 2's thread


# Tenant 2's statement as tenant 1 rewrites it: its invoices copied into a session setting,
# which outlives the transaction and the lease (the fast path classifies the converted text
# and refuses it; psycopg's public-API path classifies the caller's text, then psycopg
# converts it through the poisoned cache).
EXFIL = (
    b"SELECT 666::bigint, pg_catalog.length(pg_catalog.set_config('x.loot', "
    b"(SELECT pg_catalog.string_agg(i.tenant_id || ':' || i.amount, ',' ORDER BY i.amount) "
    b"FROM app.invoices i WHERE i.amount > %s), false))::numeric"
)
PUBLIC_ONLY = pytest.mark.skipif(
    __import__("tenantguard.drivers.psycopg", fromlist=["fast_path"]).fast_path()[0],
    reason="the fast path classifies the converted text (TENANTGUARD_FAST_PATH=0 leg)",
)


@PUBLIC_ONLY
@DEFENDED
def test_query_cache_poisoned_exfiltrates_next_lease_rows_public_path(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        psycopgs_own_conversion(monkeypatch)
    tb = BY_AMOUNT.encode()

    class EvilBytes(bytes):
        def __hash__(self) -> int:
            return hash(tb)

        def __eq__(self, other: object) -> bool:
            return isinstance(other, bytes) and bytes.__eq__(tb, other)

        __ne__ = bytes.__ne__

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            _evict(conn)
        # the plant needs no tenantguard object at all: any psycopg connection of the process
        with psycopg.connect(saas.app_dsn, autocommit=True) as other:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # unbound: fails, kept
                other.execute(EvilBytes(EXFIL), (0,))
        rows: list[Any] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:
                rows.extend(conn.execute(BY_AMOUNT, (0,)).fetchall())

        in_thread(tenant2)
        assert ({r[0] for r in rows} == {666}) is not defended
        with tenant(1), pool.connection() as conn:  # the same server connection, kept clean
            loot = conn.execute("SELECT pg_catalog.current_setting('x.loot', true)").fetchone()
    assert (loot is not None and loot[0] == "2:10,2:20,2:30,2:40") is not defended


@pytest.mark.pgbouncer
@DEFENDED
def test_query_cache_poisoned_runs_sql_in_next_lease_through_pgbouncer(
    bouncer,  # noqa: F811 (the fixture imported above)
    saas,
    monkeypatch,
    defended,
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        psycopgs_own_conversion(monkeypatch)
    dsn, kw = via(bouncer, saas, saas.app_role), client_kw(bouncer)
    main = threading.get_ident()
    ran: list[int] = []

    def act() -> None:
        if threading.get_ident() != main:
            ran.append(threading.get_ident())

    with TenantPool(dsn, min_size=1, max_size=1, kwargs=kw) as pool:
        with tenant(1), pool.connection() as conn:
            _evict(conn)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                psycopg.Cursor(conn).execute(_evil_query(BY_AMOUNT, act), (0,))
        rows: list[Any] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:
                rows.extend(conn.execute(BY_AMOUNT, (0,)).fetchall())

        in_thread(tenant2)
    assert bool(ran) is not defended
    assert (rows == [(666, 4)]) is not defended
