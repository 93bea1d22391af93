"""The sixth adversarial review's findings, each attack next to its control.

A named cursor inherits ``copy()`` and ``stream()`` from psycopg's plain cursor; they sent
their text unclassified and unbound (a planted binding on one's own lease; another lease's
rows from a kept reference). On a tenant connection they are refused before sending.

psycopg's own cursor classes built on a tenant connection (``psycopg.Cursor(conn)``,
``ClientCursor``, ``RawCursor``) and psycopg's base methods called on a tenant cursor sent
SQL that was neither classified nor bound; and a kept ``cur.adapters`` of the reused cursor
hooked the next lease's results. See ``screen_wait`` and ``_reuse.release``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest
from psycopg.types.numeric import NumericLoader

from attack_payloads import FAST_ONLY, LOOT, REPLANT_BODY, ROWS
from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.drivers.psycopg import _connection, _connection_async, _reuse
from tenantguard.errors import LeaseNotHeld, SessionStateRefused, UnsupportedOperation

SESSION_SET = "SELECT pg_catalog.set_config('x.r6', 'planted', false)"


@pytest.mark.parametrize("method", ["copy", "stream"])
def test_a_named_cursors_copy_and_stream_are_refused(saas, method) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn, conn.transaction():
            cur = conn.cursor("r6")
            with pytest.raises(UnsupportedOperation, match="nothing was sent"):
                getattr(cur, method)(SESSION_SET)
        with tenant(1), pool.connection() as conn:
            row = conn.execute("SELECT pg_catalog.current_setting('x.r6', true)").fetchone()
    assert row in ((None,), ("",))


def test_control_psycopgs_named_cursor_stream_sends_its_text(saas) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(saas.app_dsn) as conn:  # the same login, a plain connection
        cur = conn.cursor("r6")
        list(cur.stream(SESSION_SET))  # psycopg's inherited stream(): sent as it is
        row = conn.execute("SELECT pg_catalog.current_setting('x.r6', true)").fetchone()
    assert row == ("planted",)


# ------------- SQL sent around tenantguard's cursors: psycopg's cursor classes, base methods
#
# Every psycopg cursor, transaction, pipeline and COPY waits through ``conn.wait()``; a
# tenant connection screens there (``screen_wait``): what tenantguard did not classify and
# bind is refused from anyone but the lease's holder, and from the holder it ends the
# connection's life at checkin. The controls take that screening away.


PLANTED = "SELECT pg_catalog.current_setting('x.r6', true)"


def _unscreened(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: tenantguard's connections wait as psycopg's do."""
    for mod in (_connection, _connection_async):
        monkeypatch.setattr(mod, "screen_wait", lambda conn, st, gen: None)


def _replant_via(cls: Any, pool: TenantPool) -> str | None:
    """Tenant 1 replants the binding through *cls* on its own lease; tenant 2 makes an
    ordinary request; tenant 1 reads what the binding copied."""
    with tenant(1), pool.connection() as conn:
        conn.execute("SELECT 1")  # the binding is prepared now
        with pytest.raises(SessionStateRefused):  # the tenant cursor classifies it
            conn.execute("DEALLOCATE _tg_bind")
        cur = cls(conn)
        cur.execute("DEALLOCATE _tg_bind")
        cur.execute(REPLANT_BODY)
    with tenant(2), pool.connection() as conn:
        assert {r[0] for r in conn.execute(ROWS)} == {2}
    with tenant(1), pool.connection() as conn:
        row = conn.execute(LOOT).fetchone()
    return None if row is None else row[0]


@FAST_ONLY
@pytest.mark.parametrize("cls", [psycopg.ClientCursor, psycopg.Cursor, psycopg.RawCursor])
def test_a_psycopg_cursor_class_cannot_replant_the_binding(saas, cls) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        loot = _replant_via(cls, pool)
        assert pool.guard_stats.by_kind["unscreened_sql"] == 1
    assert not loot  # the connection was closed at checkin: the replant went with it


@FAST_ONLY
def test_control_without_screening_a_psycopg_cursor_replants_the_binding(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _unscreened(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        loot = _replant_via(psycopg.ClientCursor, pool)
    assert loot is not None and "2:10,2:20,2:30,2:40" in loot  # tenant 2's rows


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda conn: psycopg.Cursor(conn).execute(SESSION_SET), id="Cursor"),
        pytest.param(lambda conn: psycopg.ClientCursor(conn).execute(SESSION_SET), id="Client"),
        pytest.param(
            lambda conn: psycopg.Cursor.execute(conn.cursor(), SESSION_SET), id="base-method"
        ),
        pytest.param(
            lambda conn: list(psycopg.Cursor.stream(conn.cursor(), SESSION_SET)), id="base-stream"
        ),
        pytest.param(
            lambda conn: psycopg.Cursor.executemany(conn.cursor(), SESSION_SET, [()]),
            id="base-executemany",
        ),
    ],
)
@pytest.mark.parametrize("defended", [True, False], ids=["defended", "control"])
def test_unclassified_sql_on_a_lease_never_reaches_the_next_lease(  # type: ignore[no-untyped-def]
    saas, monkeypatch, send, defended
) -> None:
    """Fast path or not: the holder's unclassified SQL leaves a session setting behind."""
    if not defended:
        _unscreened(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            send(conn)
        try:
            with tenant(2), pool.connection() as conn:
                row = conn.execute(PLANTED).fetchone()
        except psycopg.InternalError as exc:  # psycopg's stream() left the connection
            row = exc  # in single-row mode (without the fast path): tenant 2's request fails
    if defended:
        assert row in ((None,), ("",))
    else:
        assert row == ("planted",) or isinstance(row, psycopg.InternalError)


@pytest.mark.parametrize("defended", [True, False], ids=["defended", "control"])
def test_a_kept_reference_cannot_send_between_leases(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    """While the connection waits in the pool, ``psycopg.Cursor(kept)`` is refused before
    sending, and the connection is replaced before the next lease anyway."""
    if not defended:
        _unscreened(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            pid = conn.info.backend_pid
            kept = conn
        if defended:
            with pytest.raises(LeaseNotHeld, match="ended"):
                psycopg.Cursor(kept).execute(SESSION_SET)
        else:
            psycopg.Cursor(kept).execute(SESSION_SET)
        with tenant(2), pool.connection() as conn:
            row = conn.execute(PLANTED).fetchone()
            same = conn.info.backend_pid == pid
    if defended:
        assert row in ((None,), ("",)) and not same
    else:
        assert row == ("planted",) and same


def _steal_in_next_lease(pool: TenantPool, send: Any) -> tuple[list[Any], list[BaseException]]:
    """Tenant 1 keeps its connection; another thread sends through it with a psycopg
    cursor while tenant 2's bound transaction is open on it."""
    with tenant(1), pool.connection() as conn:
        conn.execute("SELECT 1")
        kept = conn
    stolen: list[Any] = []
    errors: list[BaseException] = []
    in_tx, done = threading.Event(), threading.Event()

    def attacker() -> None:
        in_tx.wait(5)
        try:
            stolen.extend(send(kept))
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=attacker, daemon=True)
    t.start()
    with tenant(2), pool.connection() as conn, conn.transaction():
        conn.execute("SELECT 1")
        in_tx.set()
        done.wait(5)
        conn.execute("SELECT 1")
    t.join(5)
    assert not t.is_alive()
    return stolen, errors


KEPT_SENDS = [
    pytest.param(lambda kept: psycopg.Cursor(kept).execute(ROWS).fetchall(), id="Cursor"),
    pytest.param(lambda kept: psycopg.RawCursor(kept).execute(ROWS).fetchall(), id="Raw"),
    pytest.param(lambda kept: list(psycopg.Cursor(kept).stream(ROWS)), id="stream"),
    pytest.param(
        lambda kept: psycopg.Cursor.execute(kept.cursor(), ROWS).fetchall(), id="base-method"
    ),
]


@pytest.mark.parametrize("send", KEPT_SENDS)
def test_a_kept_reference_cannot_read_inside_the_next_tenants_transaction(saas, send) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        stolen, errors = _steal_in_next_lease(pool, send)
    assert stolen == []
    assert len(errors) == 1 and isinstance(errors[0], LeaseNotHeld), errors


def test_control_without_screening_a_kept_reference_reads_the_next_tenants_rows(
    saas, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    _unscreened(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        stolen, errors = _steal_in_next_lease(pool, KEPT_SENDS[0].values[0])
    assert errors == [] and stolen and {r[0] for r in stolen} == {2}


@pytest.mark.parametrize("defended", [True, False], ids=["defended", "control"])
def test_async_kept_reference_psycopg_cursor_in_the_next_tenants_transaction(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:
        _unscreened(monkeypatch)

    async def run() -> tuple[list[Any], list[BaseException]]:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                await conn.execute("SELECT 1")
                kept = conn
            stolen: list[Any] = []
            errors: list[BaseException] = []
            in_tx = asyncio.Event()

            async def attacker() -> None:
                await in_tx.wait()
                try:
                    cur = await psycopg.AsyncCursor(kept).execute(ROWS)
                    stolen.extend(await cur.fetchall())
                except LeaseNotHeld as exc:
                    errors.append(exc)

            task = asyncio.create_task(attacker())
            async with pool.connection(tenant_id=2) as conn, conn.transaction():
                await conn.execute("SELECT 1")
                in_tx.set()
                await asyncio.sleep(0.2)
                await conn.execute("SELECT 1")
            await task
            return stolen, errors

    stolen, errors = asyncio.run(run())
    if defended:
        assert stolen == [] and len(errors) == 1
    else:
        assert errors == [] and {r[0] for r in stolen} == {2}


def test_what_psycopg_sends_itself_keeps_the_connection(saas) -> None:  # type: ignore[no-untyped-def]
    """Transactions, savepoints, pipelines, named cursors, COPY, stream, executemany and
    transaction characteristics on a lease are screened as tenantguard's own: no
    connection is replaced for them (the code objects in _internals.CONTROL_CODES are psycopg's)."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            pid = conn.info.backend_pid
            with conn.transaction():
                conn.execute("SELECT 1")
                with conn.transaction():  # a savepoint
                    conn.execute(ROWS).fetchall()
                cur = conn.cursor("r6named")
                cur.execute(ROWS)
                cur.fetchone()
                cur.scroll(0, "absolute")
                cur.fetchmany(2)
                cur.fetchall()
                cur.close()
                with conn.cursor().copy(f"COPY ({ROWS}) TO STDOUT") as cp:
                    assert len(list(cp.rows())) == 2  # tenant 1 has two invoices
                assert len(list(conn.cursor().stream(ROWS))) == 2
            with conn.pipeline():
                conn.execute("SELECT 1")
                conn.execute(ROWS)
            conn.cursor().executemany("SELECT %s::int", [(1,), (2,)])
            with conn.transaction(force_rollback=True):
                conn.execute(ROWS)
            try:
                with conn.transaction():
                    conn.execute("SELECT 1")
                    raise KeyError("rolled back")
            except KeyError:
                pass
        with tenant(2), pool.connection() as conn:
            assert conn.info.backend_pid == pid
            assert {r[0] for r in conn.execute(ROWS)} == {2}
        stats = pool.guard_stats
    assert stats.discards == 0 and not stats.by_kind, stats


def test_what_psycopg_sends_itself_keeps_the_connection_async(saas) -> None:  # type: ignore[no-untyped-def]
    async def run() -> Any:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                pid = conn.info.backend_pid
                async with conn.transaction():
                    await conn.execute("SELECT 1")
                    cur = conn.cursor("r6named")
                    await cur.execute(ROWS)
                    await cur.fetchall()
                    await cur.close()
                    async with conn.cursor().copy(f"COPY ({ROWS}) TO STDOUT") as cp:
                        assert len([r async for r in cp.rows()]) == 2
                    assert len([r async for r in conn.cursor().stream(ROWS)]) == 2
                async with conn.pipeline():
                    await conn.execute(ROWS)
                await conn.cursor().executemany("SELECT %s::int", [(1,), (2,)])
            async with pool.connection(tenant_id=2) as conn:
                assert conn.info.backend_pid == pid
            return pool.guard_stats

    stats = asyncio.run(run())
    assert stats.discards == 0 and not stats.by_kind, stats


# ------------------------------------------ the reused cursor's adapters map, kept

SEEN: list[Any] = []


class SpyLoader(NumericLoader):
    """Made with the Transformer as context: reads the whole current result."""

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        res = getattr(context, "pgresult", None)
        if res is not None:
            SEEN.append([res.get_value(r, 0) for r in range(res.ntuples)])


def _adapters_kept_past_the_lease(pool: TenantPool) -> list[Any]:
    """Tenant 1 keeps only ``cur.adapters`` of the cursor conn.execute() made; while
    tenant 2's result is in hand, a loader is registered on that map."""
    SEEN.clear()
    with tenant(1), pool.connection() as conn:
        ad = conn.execute("SELECT 1").adapters
    with tenant(2), pool.connection() as conn:
        cur = conn.execute(ROWS)
        ad.register_loader("numeric", SpyLoader)  # (another thread could do it now)
        assert {r[0] for r in cur.fetchall()} == {2}
    return [v for res in SEEN for v in res]


@FAST_ONLY
def test_a_kept_adapters_map_never_reaches_the_next_lease(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        assert _adapters_kept_past_the_lease(pool) == []


@FAST_ONLY
def test_control_without_the_map_check_the_kept_map_reads_the_next_result(
    saas, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    class Unchecked:
        def __eq__(self, other: object) -> bool:
            return True

        def __ne__(self, other: object) -> bool:
            return False

        __hash__ = None  # type: ignore[assignment]

    real = _reuse.adopt

    def adopt(conn: Any, cur: Any) -> None:
        real(conn, cur)
        conn._tg_adapters_refs = Unchecked()  # any count passes: the check away

    monkeypatch.setattr(_reuse, "adopt", adopt)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        assert b"2" in _adapters_kept_past_the_lease(pool)
