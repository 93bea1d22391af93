"""The tenth adversarial review, each attack next to its control.

1. psycopg's base-class methods on the connection's adapters map
   (``AdaptersMap.register_loader(conn.adapters, ...)``, ``register_dumper``,
   ``TypesRegistry.add``) skipped the watched subclass: the next tenant's rows went
   through tenant 1's loader, its parameters through tenant 1's dumper. Now the identities
   of the map's tables (copied on their first write) are compared at checkout.
2. A named cursor's ``arraysize`` was checked, then read again by psycopg (a signal handler
   swapped in SQL between the two reads); now it can only ever hold an ``int``.
3. ``withhold=`` an object falsy once and truthy after: screened as no WITH HOLD, declared
   WITH HOLD; now ``withhold``/``scrollable`` must be exact ``bool``.
4. ``psycopg.Copy(cur).set_types()`` on the reused cursor fixed the dumpers of the
   Transformer the next tenant's same query would use; now the kept cursor's next
   statement always makes a new Transformer.

Documented, not closed (README): psycopg resolves a dumper registered by name by editing
the dict shared with ``psycopg.adapters`` in place (a class claiming that name takes it
away, process-wide); and a loader registered on ``psycopg.adapters`` itself reaches every
connection opened later: both are psycopg's process-wide state.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.adapt import AdaptersMap, Dumper, Loader

from attack_payloads import DEFENDED, FAST_ONLY, leaked, loot_after_tenant2
from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.drivers.psycopg import (
    _connection,
    _connection_async,
    _connection_base,
    _internals,
    _pool,
    _pool_async,
    _reuse,
)
from test_attacks_round7 import _replant_text

STOLEN: list[Any] = []


class SpyLoader(Loader):
    def load(self, data: Any) -> Any:
        STOLEN.append(bytes(data))
        return bytes(data).decode()


class RewritingDumper(Dumper):
    oid = 25  # text

    def dump(self, obj: Any) -> bytes:
        STOLEN.append(obj)
        return b"rewritten by tenant 1"


def _adapters_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the checkout does not compare the adapters' tables."""

    for m in (_pool, _pool_async, _internals):
        monkeypatch.setattr(m, "adapters_changed", lambda conn: False)


@DEFENDED
def test_a_loader_registered_through_psycopgs_base_class_never_reaches_the_next_tenant(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:
        _adapters_unchecked(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            AdaptersMap.register_loader(conn.adapters, "numeric", SpyLoader)
        STOLEN.clear()
        with tenant(2), pool.connection() as conn:
            rows = conn.execute("SELECT amount FROM app.invoices").fetchall()
        kinds = pool.guard_stats.by_kind
    assert len(rows) >= 4
    if defended:
        assert STOLEN == [] and kinds["adapters"] == 1
    else:
        assert sorted(STOLEN)[:4] == [b"10", b"20", b"30", b"40"]


@DEFENDED
def test_a_dumper_registered_through_psycopgs_base_class_never_rewrites_the_next_tenant(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:
        _adapters_unchecked(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            AdaptersMap.register_dumper(conn.adapters, str, RewritingDumper)
        STOLEN.clear()
        with tenant(2), pool.connection() as conn:
            (echo,) = conn.execute("SELECT %s::text", ("secret of tenant 2",)).fetchone()
    if defended:
        assert STOLEN == [] and echo == "secret of tenant 2"
    else:
        assert STOLEN == ["secret of tenant 2"] and echo == "rewritten by tenant 1"


def test_async_a_loader_registered_through_psycopgs_base_class_never_reaches_the_next_tenant(  # type: ignore[no-untyped-def]
    saas,
) -> None:
    async def main() -> None:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                AdaptersMap.register_loader(conn.adapters, "numeric", SpyLoader)
            STOLEN.clear()
            async with pool.connection(tenant_id=2) as conn:
                await (await conn.execute("SELECT amount FROM app.invoices")).fetchall()

    asyncio.run(main())
    assert STOLEN == []


class Evil(Decimal):
    def __str__(self) -> str:
        return _replant_text("c10")


@FAST_ONLY
@DEFENDED
def test_a_named_cursors_arraysize_only_ever_holds_an_int(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    """No check-then-read window: the attribute refuses anything but an int when it is
    set (a signal handler swapped a Decimal in between a check and psycopg's read)."""
    if not defended:
        for m in (_connection, _connection_async, _connection_base):
            monkeypatch.setattr(m, "exact", lambda value, kind, what: None)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")  # the binding is prepared
            with conn.transaction():
                cur = conn.cursor("c10")
                cur.execute("SELECT 1")
                if defended:
                    with pytest.raises(TypeError, match="arraysize must be a int"):
                        cur.arraysize = Evil("1")  # type: ignore[assignment]
                else:
                    cur.arraysize = Evil("1")  # type: ignore[assignment]
                    try:
                        cur.fetchmany()
                    except psycopg.InternalError:  # "received 4 results": it all ran
                        pass
        loot = loot_after_tenant2(pool)
    assert leaked(loot) is not defended


class Flip:
    """False the first time it is asked, True afterwards."""

    def __init__(self) -> None:
        self.asked = 0

    def __bool__(self) -> bool:
        self.asked += 1
        return self.asked > 1


@DEFENDED
def test_a_flipping_withhold_never_leaves_a_holdable_cursor(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        for m in (_connection, _connection_async):
            monkeypatch.setattr(m, "exact", lambda value, kind, what: None)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            with conn.transaction():
                if defended:
                    with pytest.raises(TypeError, match="withhold must be a bool"):
                        conn.cursor("report", withhold=Flip())  # type: ignore[call-overload]
                else:
                    cur = conn.cursor("report", withhold=Flip())  # type: ignore[call-overload]
                    cur.execute("SELECT id, amount, tenant_id FROM app.invoices")
                    del cur
        with tenant(2), pool.connection() as conn:
            held = conn.execute("SELECT name FROM pg_catalog.pg_cursors").fetchall()
    assert (("report",) in held) is not defended


Q_BY_AMOUNT = "SELECT id, amount FROM app.invoices WHERE amount >= %s ORDER BY id"


@FAST_ONLY
@DEFENDED
def test_copy_set_types_on_the_reused_cursor_never_reaches_the_next_tenant(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:
        monkeypatch.setattr(_reuse, "FRESH_TRANSFORMER", False)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            cur = conn.execute(Q_BY_AMOUNT, (0,))
            cur.pgresult = None
            cp = psycopg.Copy(cur)
            cp.set_types(["text"])  # the Transformer's row dumpers, fixed
            del cp, cur
        with tenant(2), pool.connection() as conn:
            try:
                outcome: Any = conn.execute(Q_BY_AMOUNT, (15,)).fetchall()
            except Exception as exc:
                outcome = exc
    if defended:
        assert [r[1] for r in outcome] == [20, 30, 40]
    else:
        assert isinstance(outcome, Exception)
