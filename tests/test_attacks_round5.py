"""The fifth adversarial review: a connection changed while it waits in the pool.

Between leases a connection sits in psycopg_pool, and a reference kept past its lease (or
``pool.pool`` used directly) could still change it: a row factory or an adapter that the
next tenant's rows and parameters go through, a handler, a pipeline, a transaction. Two
layers stop it: what psycopg_pool and tenantguard never do to a pooled connection needs the
lease (``LeaseNotHeld``), and a connection handed out changed is discarded before the next
lease (the checkout check). Each layer has a test with the other taken away, and a control
with both taken away shows the attack working.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.types import TypeInfo
from psycopg.types.numeric import NumericLoader
from psycopg.types.string import StrDumper

from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.drivers.psycopg import fast_path
from tenantguard.errors import LeaseNotHeld, UnsupportedOperation

ROWS = "SELECT tenant_id, amount FROM app.invoices ORDER BY amount"
STOLEN: list[object] = []


def spy_rows(cursor: Any) -> Any:
    def make(values: Any) -> tuple[Any, ...]:
        STOLEN.append(tuple(values))
        return tuple(values)

    return make


class SpyLoader(NumericLoader):
    def load(self, data: Any) -> Any:
        STOLEN.append(("numeric", bytes(data)))
        return super().load(data)


class Rebind(StrDumper):
    def dump(self, obj: Any) -> Any:
        STOLEN.append(("param", obj))
        return super().dump(obj)


def _tpc_begin(kept: Any) -> None:
    kept.autocommit = False
    kept.tpc_begin("tg_r5")


# What a kept reference does to the connection while it waits in the pool.
ACTIONS: dict[str, Callable[[Any], Any]] = {
    "row_factory": lambda kept: setattr(kept, "row_factory", spy_rows),
    "cursor_factory": lambda kept: setattr(kept, "cursor_factory", psycopg.Cursor),
    "register_loader": lambda kept: kept.adapters.register_loader("numeric", SpyLoader),
    "register_dumper": lambda kept: kept.adapters.register_dumper(str, Rebind),
    "types.add": lambda kept: kept.adapters.types.add(TypeInfo("t", 25, 1009)),
    "notice_handler": lambda kept: kept.add_notice_handler(STOLEN.append),
    "read_only": lambda kept: setattr(kept, "read_only", True),
    "autocommit": lambda kept: setattr(kept, "autocommit", False),
    "tpc_begin": _tpc_begin,
}
WATCHED_BY_INTERNALS = {"register_loader", "register_dumper", "types.add"}


def _kept(pool: TenantPool) -> Any:
    with tenant(1), pool.connection() as conn:
        conn.execute("SELECT 1")
        return conn


def _victim(pool: TenantPool, kept: Any) -> tuple[bool, list[Any]]:
    """Tenant 2's ordinary request: (same connection object as the kept one, its rows)."""
    STOLEN.clear()
    with tenant(2), pool.connection() as conn:
        rows = conn.execute(ROWS).fetchall()
        conn.execute("SELECT %s::text", ("2",)).fetchone()
        return conn is kept, rows


def _no_lease_check(monkeypatch: Any) -> None:
    from tenantguard.drivers.psycopg import _connection, _connection_async, _connection_base

    for module in (_connection, _connection_async, _connection_base):
        monkeypatch.setattr(module, "leased", lambda conn: None)
        monkeypatch.setattr(module, "refuse_tpc", lambda conn: None)
    for module in (_connection, _connection_async):  # and the screening in conn.wait()
        monkeypatch.setattr(module, "screen_wait", lambda conn, st, gen: None)


def _no_checkout_check(monkeypatch: Any) -> None:
    from tenantguard.drivers.psycopg._pool_base import PoolCore

    monkeypatch.setattr(PoolCore, "checkout_refused", lambda self, conn, stale=False: conn.closed)


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_a_kept_reference_cannot_change_a_pooled_connection(saas, action) -> None:  # type: ignore[no-untyped-def]
    if action in WATCHED_BY_INTERNALS and not fast_path()[0]:
        pytest.skip("adapters are watched only with the fast path (README)")
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        kept = _kept(pool)
        with pytest.raises((LeaseNotHeld, UnsupportedOperation)):
            ACTIONS[action](kept)
        same, rows = _victim(pool, kept)
    assert same and rows == [(2, 10), (2, 20), (2, 30), (2, 40)]
    assert STOLEN == []


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_a_connection_changed_in_the_pool_is_discarded_before_the_next_lease(  # type: ignore[no-untyped-def]
    saas, action, monkeypatch
) -> None:
    if action in WATCHED_BY_INTERNALS and not fast_path()[0]:
        pytest.skip("adapters are watched only with the fast path (README)")
    _no_lease_check(monkeypatch)  # as if a way in were missed: the second layer
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        kept = _kept(pool)
        ACTIONS[action](kept)
        same, rows = _victim(pool, kept)
        assert pool.guard_stats.by_kind.get("client_state") == 1
    assert not same and rows == [(2, 10), (2, 20), (2, 30), (2, 40)]
    assert STOLEN == []


def test_control_without_both_layers_the_next_tenants_rows_reach_the_kept_code(  # type: ignore[no-untyped-def]
    saas, monkeypatch
) -> None:
    _no_lease_check(monkeypatch)
    _no_checkout_check(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        kept = _kept(pool)
        ACTIONS["row_factory"](kept)
        same, rows = _victim(pool, kept)
    assert same and {r[0] for r in rows} == {2}
    assert {r[0] for r in STOLEN if isinstance(r[0], int)} == {2}  # tenant 1's code saw them


def test_the_underlying_pool_cannot_hand_back_a_changed_connection(saas) -> None:  # type: ignore[no-untyped-def]
    """``pool.pool`` is psycopg_pool itself: a connection taken from it is no lease."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        raw = pool.pool.getconn()
        try:
            with pytest.raises(LeaseNotHeld):
                raw.row_factory = spy_rows
        finally:
            pool.pool.putconn(raw)
        _, rows = _victim(pool, None)
    assert rows == [(2, 10), (2, 20), (2, 30), (2, 40)] and STOLEN == []


def test_a_kept_reference_cannot_hold_a_pipeline_open_for_the_next_lease(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        kept = _kept(pool)
        with pytest.raises(LeaseNotHeld):
            with kept.pipeline():
                pass


def test_a_pipeline_left_open_in_the_pool_is_discarded(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _no_lease_check(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        kept = _kept(pool)
        entered, release = threading.Event(), threading.Event()

        def hold() -> None:
            try:
                with kept.pipeline():
                    entered.set()
                    release.wait(10)
            except psycopg.OperationalError:
                pass  # the checkout check closed the connection under it

        t = threading.Thread(target=hold, daemon=True)
        t.start()
        entered.wait(5)
        try:
            same, rows = _victim(pool, kept)
        finally:
            release.set()
            t.join(10)
    assert not same and rows == [(2, 10), (2, 20), (2, 30), (2, 40)]


def test_notifies_from_a_kept_reference_is_refused(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        kept = _kept(pool)
        with pytest.raises(LeaseNotHeld):
            next(kept.notifies(timeout=0.1))


def test_control_notifies_from_a_kept_reference_stalls_the_next_tenant(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _no_lease_check(monkeypatch)
    _no_checkout_check(monkeypatch)  # (which discards a connection whose lock is held)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        kept = _kept(pool)
        waiting = threading.Event()

        def listen() -> None:
            waiting.set()
            for _ in kept.notifies(timeout=1.5):
                pass

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        waiting.wait(5)
        time.sleep(0.1)
        start = time.perf_counter()
        with tenant(2), pool.connection() as conn:
            conn.execute("SELECT 1")
        stalled = time.perf_counter() - start
        t.join(10)
    assert stalled > 1.0  # tenant 2 waited for tenant 1's listener (the control)


def test_async_notifies_from_a_kept_reference_is_refused(saas) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                kept = conn
            with pytest.raises(LeaseNotHeld):
                async for _ in kept.notifies(timeout=0.1):
                    pass
            with pytest.raises(LeaseNotHeld):
                kept.row_factory = spy_rows

    asyncio.run(run())


def _cancel_loop(pool: TenantPool, seconds: float = 1.5) -> tuple[int, int]:
    """A thread keeps calling cancel_safe() on a kept reference while tenant 2 runs short
    statements: (statements cancelled, calls refused)."""
    kept = _kept(pool)
    stop = threading.Event()
    refused = [0]

    def canceller() -> None:
        while not stop.is_set():
            try:
                kept.cancel_safe(timeout=1)
            except LeaseNotHeld:
                refused[0] += 1
            except psycopg.Error:
                pass
            time.sleep(0.0005)

    t = threading.Thread(target=canceller, daemon=True)
    t.start()
    cancelled = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        with tenant(2), pool.connection() as conn:
            try:
                conn.execute("SELECT pg_catalog.pg_sleep(0.005)")
            except psycopg.errors.QueryCanceled:
                cancelled += 1
    stop.set()
    t.join(10)
    return cancelled, refused[0]


def test_cancel_from_a_kept_reference_never_reaches_the_next_lease(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        cancelled, refused = _cancel_loop(pool)
    assert cancelled == 0 and refused > 0


def test_control_without_the_check_cancels_land_in_the_next_lease(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _no_lease_check(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        cancelled, _ = _cancel_loop(pool, seconds=3)
    assert cancelled > 0


@pytest.mark.parametrize("method", ["tpc_begin", "tpc_prepare", "tpc_commit", "tpc_rollback"])
def test_two_phase_commit_is_refused_on_a_lease(saas, method) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            args = ("x",) if method == "tpc_begin" else ()
            with pytest.raises(UnsupportedOperation, match="nothing was sent"):
                getattr(conn, method)(*args)
            with pytest.raises(UnsupportedOperation):
                conn.tpc_recover()


def test_control_psycopg_sends_two_phase_commit_itself(saas) -> None:  # type: ignore[no-untyped-def]
    conn = psycopg.connect(saas.app_dsn)  # the same login, a plain connection
    try:
        conn.tpc_begin("tg_r5_control")
        conn.execute("SELECT 1")
        try:
            conn.tpc_prepare()  # PREPARE TRANSACTION, which the classifier never sees
            conn.tpc_rollback()
        except (psycopg.errors.ObjectNotInPrerequisiteState, psycopg.NotSupportedError) as exc:
            # max_prepared_transactions = 0 here: refused by the server, or by psycopg after
            # asking it; where it is on, the transaction is prepared (shown by the review
            # on such a server)
            assert "prepared transactions are disabled" in str(exc)
    finally:
        conn.close()
