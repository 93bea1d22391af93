"""The thirteenth adversarial review (the public-API findings), each next to its control.

1. ``psycopg.Connection.prepare_threshold.fset(conn, Planted())`` (psycopg's base-class
   property, as in round 11): the checkout compared the value with ``==`` after the next
   lease had started, so ``Planted.__eq__`` ran in tenant 2's thread, as the holder, and
   read tenant 2's rows. Now the checkout compares exact types before values, and reads
   the connection's identities before anything a lease could have planted.
2. A parameter whose class has a metaclass hashing like ``int``: psycopg's Transformer
   caches a dumper per parameter class and stays on the reused cursor while the same query
   object runs again; tenant 2's lookup of ``int`` compared with tenant 1's class and ran
   its metaclass's ``__eq__`` in tenant 2's thread. Now a statement with a parameter
   outside a set of plain classes leaves a new Transformer for the next lease.

The review's other findings write private attributes of the connection and of the objects
it holds (``conn._prepared._names``, ``conn._tg_state.binds``, the classifier's cache,
``conn._autocommit``); the README's limits say why that is out of reach.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

from attack_payloads import DEFENDED, FAST_ONLY, in_thread, spy
from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.drivers.psycopg import _internals, _pool, _pool_async, _reuse

ROWS = "SELECT tenant_id, amount FROM app.invoices ORDER BY amount"
BY_AMOUNT = "SELECT tenant_id, amount FROM app.invoices WHERE amount > %s ORDER BY amount"


def _loose_comparisons(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the checkout compares psycopg's preparation settings with ``==`` only."""

    def changed(conn: Any) -> bool:
        rec, p = conn._tg_adapters, conn._prepared
        return not (p.prepare_threshold == rec[9] and p.prepared_max == rec[10])

    for m in (_pool, _pool_async, _internals):
        monkeypatch.setattr(m, "adapters_changed", changed)


class _Planted:
    """Compares equal to anything; what it compares with, it reads as the caller."""

    def __init__(self, act: Any) -> None:
        self.act = act

    def __eq__(self, other: object) -> bool:
        self.act()
        return True

    __hash__ = object.__hash__

    def __ge__(self, other: object) -> bool:  # psycopg: ``count >= prepare_threshold``
        return False

    __le__ = __ge__


@DEFENDED
def test_a_planted_prepare_threshold_never_runs_at_the_next_checkout(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:
        _loose_comparisons(monkeypatch)
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
            psycopg.Connection.prepare_threshold.fset(conn, _Planted(act))  # type: ignore[attr-defined]
        rows: list[Any] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:
                rows.extend(conn.execute(ROWS).fetchall())

        in_thread(tenant2)
        kinds = dict(pool.guard_stats.by_kind)
    assert {r[0] for r in rows} == {2}
    if defended:
        assert loot == [] and kinds.get("adapters") == 1
    else:
        assert {r[0] for r in loot} == {2}


@DEFENDED
def test_async_a_planted_prepare_threshold_never_runs_at_the_next_checkout(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:
        _loose_comparisons(monkeypatch)
    loot: list[Any] = []
    kept: list[Any] = []

    async def main() -> list[Any]:
        first: list[Any] = []

        def act() -> None:
            task = asyncio.current_task()
            if kept and first and task is not first[0]:
                kept[0].row_factory = spy(loot)  # in tenant 2's task: "the holder"
                kept.clear()

        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:

            async def tenant1() -> None:
                first.append(asyncio.current_task())
                with tenant(1):
                    async with pool.connection() as conn:
                        kept.append(conn)
                        psycopg.AsyncConnection.prepare_threshold.fset(conn, _Planted(act))  # type: ignore[attr-defined]

            async def tenant2() -> list[Any]:
                with tenant(2):
                    async with pool.connection() as conn:
                        cur = await conn.execute(ROWS)
                        return await cur.fetchall()

            await asyncio.create_task(tenant1())
            return await asyncio.create_task(tenant2())

    rows = asyncio.run(main())
    assert {r[0] for r in rows} == {2}
    assert (loot == []) is defended
    if not defended:
        assert {r[0] for r in loot} == {2}


@FAST_ONLY  # (cursor reuse)
@DEFENDED
def test_a_parameter_class_never_runs_in_the_next_leases_dumper_lookup(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:  # the control: the kept cursor's Transformer is kept for the next lease
        monkeypatch.setattr(_reuse, "FRESH_TRANSFORMER", False)
    loot: list[Any] = []
    ran: list[int] = []
    kept: list[Any] = []
    main = threading.get_ident()

    class Meta(type):
        def __hash__(cls) -> int:
            return hash(int)

        def __eq__(cls, other: object) -> bool:
            if kept and not ran and threading.get_ident() != main:
                ran.append(threading.get_ident())
                kept[0].row_factory = spy(loot)  # in tenant 2's thread: "the holder"
            return type.__eq__(cls, other)  # type: ignore[no-any-return]

    class Evil(int, metaclass=Meta):
        pass

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept.append(conn)
            conn.execute(BY_AMOUNT, (Evil(0),)).fetchall()  # the app's own query constant
        rows: list[Any] = []

        def tenant2() -> None:
            with tenant(2), pool.connection() as conn:
                conn.execute(BY_AMOUNT, (0,)).fetchall()  # the same constant
                rows.extend(conn.execute(ROWS).fetchall())

        in_thread(tenant2)
    assert {r[0] for r in rows} == {2}
    if defended:
        assert ran == [] and loot == []
    else:
        assert ran and {r[0] for r in loot} == {2}


@FAST_ONLY
def test_plain_parameters_keep_the_transformer_others_do_not(saas) -> None:  # type: ignore[no-untyped-def]
    """What the fast path marks: only statements with a parameter outside the plain classes
    (a new Transformer costs the next lease about 15k instructions)."""
    from datetime import date
    from decimal import Decimal
    from uuid import uuid4

    class Sub(int):
        pass

    plain: list[Any] = [
        (1, "a", None, 1.5, True, b"x", Decimal(1), uuid4(), date.today()),
        {"t": 1, "k": 2},
    ]
    other: list[Any] = [(Sub(1),), ([1, 2],), {"t": [1], "k": 2}]
    query = "SELECT %s::text IS NULL"
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        for params, marked in [(p, False) for p in plain] + [(p, True) for p in other]:
            with tenant(1), pool.connection() as conn:
                if isinstance(params, dict):
                    cur = conn.cursor()
                    cur.execute("SELECT %(t)s::text || %(k)s::text", params)
                else:
                    cur = conn.cursor()
                    for value in params:
                        cur.execute(query, (value,))
                assert cur._tg_foreign is marked, params
