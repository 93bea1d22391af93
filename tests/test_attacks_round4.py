"""The fourth adversarial review: Python-side state and kept references, PREPARE TRANSACTION.

Each defence has a test, and a control that removes it and shows the same attack working.
Pools have one connection, so the next lease gets the attacker's connection object and
server session.
"""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest
from psycopg.types.string import StrDumper

from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.core.classify import classify_sql
from tenantguard.drivers.psycopg import fast_path
from tenantguard.errors import LeaseNotHeld, UnsupportedOperation

READ = (
    "SELECT pg_catalog.current_setting('app.tenant_id'), count(*), "
    "array_agg(DISTINCT tenant_id ORDER BY tenant_id) FROM app.invoices"
)
FAST_ONLY = pytest.mark.skipif(
    not fast_path()[0],
    reason="the public-API path cannot see adapters registered on a connection (README)",
)


class Rebind(StrDumper):
    """Every '2' dumped becomes '1', every '1' becomes '2'."""

    def dump(self, obj):  # type: ignore[no-untyped-def]
        swap = {"1": "2", "2": "1"}
        return super().dump(swap.get(obj, obj))


# -- adapters registered on a lease ------------------------------------------------------


def _plant_then_victim(pool: TenantPool) -> tuple[object, object]:
    """Tenant 1 registers a str dumper on its lease; tenant 2's next lease binds in a
    transaction (the binding cursor) and passes a parameter."""
    with tenant(1), pool.connection() as conn:
        conn.adapters.register_dumper(str, Rebind)
    with tenant(2), pool.connection() as conn:
        with conn.transaction():
            row = conn.execute(READ).fetchone()
        echoed = conn.execute("SELECT %s::text", ("2",)).fetchone()
    return row, echoed


@FAST_ONLY
def test_adapters_registered_on_a_lease_never_reach_the_next_tenant(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        row, echoed = _plant_then_victim(pool)
        assert pool.guard_stats.by_kind.get("client_state") == 1  # replaced at checkin
    assert row == ("2", 4, [2])
    assert echoed == ("2",)


@FAST_ONLY
@pytest.mark.parametrize("what", ["loader", "type"])
def test_a_loader_or_type_registered_on_a_lease_replaces_the_connection(saas, what) -> None:  # type: ignore[no-untyped-def]
    from psycopg.types import TypeInfo
    from psycopg.types.numeric import IntLoader

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            first = conn
            if what == "loader":
                conn.adapters.register_loader("int8", IntLoader)
            else:
                info = TypeInfo.fetch(conn, "int4")
                assert info is not None
                conn.adapters.types.add(info)
        assert pool.guard_stats.by_kind.get("client_state") == 1
        with tenant(2), pool.connection() as conn:
            assert conn is not first


@FAST_ONLY
def test_control_without_the_adapters_check_the_next_lease_runs_the_planted_dumper(  # type: ignore[no-untyped-def]
    saas, monkeypatch
) -> None:
    from tenantguard.drivers.psycopg import _internals, _pool, _pool_async

    monkeypatch.setattr(_internals, "watch_adapters", lambda conn, hook: False)
    for m in (_pool, _pool_async, _internals):  # and the checkout's comparison of the tables
        monkeypatch.setattr(m, "adapters_changed", lambda conn: False)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        row, echoed = _plant_then_victim(pool)
    assert echoed == ("1",)  # tenant 2's parameter rewritten by tenant 1's code
    assert row == ("2", 4, [2])  # the binding cursor predates the plant: still right


def _bind_after_registering(pool: TenantPool) -> object:
    """Within one lease of tenant 1: a dumper registered, then a transaction binds."""
    with tenant(1), pool.connection() as conn:
        conn.adapters.register_dumper(str, Rebind)
        with conn.transaction():
            return conn.execute(READ).fetchone()


def test_the_binding_never_goes_through_the_connections_adapters(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        assert _bind_after_registering(pool) == ("1", 2, [1])


def test_control_a_binding_cursor_made_late_binds_another_tenant(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.drivers.psycopg import _connection

    made_late = _connection.TenantConnection._raw_cursor

    def late(self):  # type: ignore[no-untyped-def]
        self._tg_internal_cursor = None  # as before: made when first needed
        return made_late(self)

    monkeypatch.setattr(_connection.TenantConnection, "_raw_cursor", late)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        assert _bind_after_registering(pool) == ("2", 4, [2])  # tenant 1 read tenant 2


# -- a connection kept past its lease ----------------------------------------------------


def _kept_savepoint_rolls_back(pool: TenantPool, amount: int) -> tuple[dict[str, object], int]:
    in_tx, savepoint, inserted, done = (threading.Event() for _ in range(4))
    result: dict[str, object] = {}
    with tenant(1), pool.connection() as conn:
        kept = conn

    def victim() -> None:
        with tenant(2), pool.connection() as conn:
            with conn.transaction():
                in_tx.set()
                savepoint.wait(5)
                conn.execute(
                    "INSERT INTO app.invoices (tenant_id, amount, note) VALUES (2, %s, 'r4')",
                    (amount,),
                )
                inserted.set()
                done.wait(5)
            result["committed"] = True

    t = threading.Thread(target=victim)
    t.start()
    in_tx.wait(5)
    try:
        with kept.transaction(force_rollback=True):
            savepoint.set()
            inserted.wait(5)
    except LeaseNotHeld:
        result["refused"] = True
    finally:
        savepoint.set()
        done.set()
        t.join(10)
    return result, amount


def _count(saas, amount: int) -> int:  # type: ignore[no-untyped-def]
    with psycopg.connect(saas.admin_dsn) as admin:
        row = admin.execute("SELECT count(*) FROM app.invoices WHERE amount = %s", (amount,))
        n = row.fetchone()
        admin.execute("DELETE FROM app.invoices WHERE amount = %s", (amount,))
        return int(n[0]) if n else 0


def test_a_kept_connection_cannot_open_a_savepoint_in_the_next_lease(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        result, amount = _kept_savepoint_rolls_back(pool, 7771)
    assert result == {"committed": True, "refused": True}
    assert _count(saas, amount) == 1  # tenant 2's INSERT stands


def _no_held_check(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.drivers.psycopg import _connection, _connection_async, _connection_base

    for module in (_connection, _connection_async, _connection_base):
        monkeypatch.setattr(module, "held", lambda conn: None)
        monkeypatch.setattr(module, "leased", lambda conn: None)
    for module in (_connection, _connection_async):  # and the screening in conn.wait()
        monkeypatch.setattr(module, "screen_wait", lambda conn, st, gen: None)


def test_control_without_the_check_a_kept_savepoint_undoes_the_next_tenants_insert(  # type: ignore[no-untyped-def]
    saas, monkeypatch
) -> None:
    _no_held_check(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        result, amount = _kept_savepoint_rolls_back(pool, 7772)
    assert result == {"committed": True}
    assert _count(saas, amount) == 0  # committed, and gone


def _kept_calls(pool: TenantPool, call) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """A thread calls *call(kept)* during tenant 2's lease, which runs a 1 s statement."""
    started = threading.Event()
    result: dict[str, object] = {}
    with tenant(1), pool.connection() as conn:
        kept = conn

    def victim() -> None:
        with tenant(2), pool.connection() as conn:
            started.set()
            try:
                conn.execute("SELECT pg_catalog.pg_sleep(1)")
                result["victim"] = "ok"
            except psycopg.Error as exc:
                result["victim"] = type(exc).__name__

    t = threading.Thread(target=victim)
    t.start()
    started.wait(5)
    time.sleep(0.3)
    try:
        call(kept)
        result["kept"] = "ran"
    except LeaseNotHeld:
        result["kept"] = "refused"
    t.join(10)
    return result


@pytest.mark.parametrize("method", ["cancel_safe", "cancel"])
def test_a_kept_connection_cannot_cancel_the_next_tenants_statement(saas, method) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        result = _kept_calls(pool, lambda kept: getattr(kept, method)())
    assert result == {"kept": "refused", "victim": "ok"}


def test_control_without_the_check_a_kept_connection_cancels_it(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _no_held_check(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        result = _kept_calls(pool, lambda kept: kept.cancel_safe())
    assert result == {"kept": "ran", "victim": "QueryCanceled"}


def test_a_kept_connection_cannot_hook_the_next_tenants_notices(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        result = _kept_calls(pool, lambda kept: kept.add_notice_handler(print))
        assert result == {"kept": "refused", "victim": "ok"}
        assert pool.guard_stats.by_tenant == {}  # nothing left behind, nobody blamed


def test_control_without_the_check_a_kept_handler_gets_the_next_tenants_notices(  # type: ignore[no-untyped-def]
    saas, monkeypatch
) -> None:
    _no_held_check(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        result = _kept_calls(pool, lambda kept: kept.add_notice_handler(print))
        assert result == {"kept": "ran", "victim": "ok"}
        assert pool.guard_stats.by_tenant == {"2": 1}  # and the victim is blamed for it


def test_a_kept_connection_cannot_close_the_next_tenants_connection(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        result = _kept_calls(pool, lambda kept: kept.close())
    assert result == {"kept": "refused", "victim": "ok"}


def test_control_without_the_check_closing_a_kept_connection_breaks_the_next_lease(  # type: ignore[no-untyped-def]
    saas, monkeypatch
) -> None:
    _no_held_check(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        result = _kept_calls(pool, lambda kept: kept.close())
    assert result["kept"] == "ran" and result["victim"] != "ok", result


def test_between_leases_a_kept_connection_may_still_close(saas) -> None:  # type: ignore[no-untyped-def]
    """In the pool (no lease), close() is let through: psycopg_pool replaces the connection."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept = conn
        kept.close()
        with tenant(2), pool.connection() as conn:
            assert conn.execute(READ).fetchone() == ("2", 4, [2])


def test_control_plain_psycopg_pool_hands_out_the_connection_a_kept_reference_closed(saas) -> None:  # type: ignore[no-untyped-def]
    from psycopg_pool import ConnectionPool

    with ConnectionPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with pool.connection() as conn:
            kept = conn
        kept.close()
        with pool.connection() as conn, pytest.raises(psycopg.OperationalError, match="closed"):
            conn.execute("SELECT 1")


def test_a_kept_async_connection_cannot_open_a_savepoint_in_the_next_lease(saas) -> None:  # type: ignore[no-untyped-def]
    async def run() -> object:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                kept = conn
            in_tx, release = asyncio.Event(), asyncio.Event()

            async def victim() -> None:
                async with pool.connection(tenant_id=2) as conn, conn.transaction():
                    in_tx.set()
                    await release.wait()

            task = asyncio.create_task(victim())
            await in_tx.wait()
            try:
                async with kept.transaction(force_rollback=True):
                    pass
                return "ran"
            except LeaseNotHeld:
                return "refused"
            finally:
                release.set()
                await task

    assert asyncio.run(run()) == "refused"


# -- PREPARE TRANSACTION -----------------------------------------------------------------


@pytest.mark.parametrize(
    "stmt", ["PREPARE TRANSACTION 'x'", "COMMIT PREPARED 'x'", "ROLLBACK PREPARED 'x'"]
)
def test_prepared_transactions_are_refused_before_sending(saas, stmt) -> None:  # type: ignore[no-untyped-def]
    """A prepared transaction keeps its locks past the lease, the connection and a restart;
    the names of others' are in pg_prepared_xacts. Refused in every mode."""
    assert any(e.startswith("refused:") for e in classify_sql(stmt))
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            with pytest.raises(UnsupportedOperation, match="nothing was sent"):
                with conn.transaction():
                    conn.execute(stmt)


def test_control_the_server_receives_prepare_transaction_without_tenantguard(saas) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(saas.app_dsn) as conn:  # the same login, a plain connection
        conn.execute("SELECT 1")
        # Either it prepares (max_prepared_transactions > 0) or the server refuses it:
        # both show the statement reached the server.
        try:
            conn.execute("PREPARE TRANSACTION 'tg_r4_control'")
            conn.execute("ROLLBACK PREPARED 'tg_r4_control'")
        except psycopg.errors.ObjectNotInPrerequisiteState as exc:
            assert "prepared transactions are disabled" in str(exc)
