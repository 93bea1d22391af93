"""The seventh adversarial review (attacks on the ``conn.wait()`` screening), each attack
next to its control.

1. A ``sql.Composable`` was classified as ``as_string()`` and sent as
   ``as_bytes(cursor)``: a dumper on the cursor's own adapters, or a value whose
   ``__str__`` alternates, showed the classifier one statement and the server another.
   Now rendered once, with the cursor (``rendered``).
2. A named cursor's MOVE/FETCH count and its name are written into SQL text by psycopg
   (``sql.Literal``, simple protocol): a ``Decimal`` subclass's ``__str__`` was SQL. Now
   exact ``int``/``str`` only (``exact``), and FETCH/MOVE/CLOSE are screened as
   tenantguard's own only when they come through its cursor.
3. The classified send's one-shot pass (``_tg_pass``) was taken by whoever waited first
   on the connection's lock: a task of the same lease, or a kept reference during another
   tenant's transaction (which then read that tenant's rows). Now only the holder's.
4. psycopg's base ``Connection`` methods skip tenantguard's overrides: the setters of
   transaction characteristics now mark the connection where psycopg runs them (their
   code objects), and handlers are counted in psycopg's own lists.
5. A generator renamed to look like psycopg's COMMIT: generators are known by their
   (read-only) code objects, not their names.

Not closed, documented in the README: ``psycopg.Connection.cancel(kept)``, ``.close(kept)``
and ``.wait(kept, gen)`` called on a kept reference bypass every Python-level check, like
``conn.pgconn``; cancel and close cannot read or write another tenant's rows.
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.adapt import Dumper

from attack_payloads import (
    DEFENDED,
    FAST_ONLY,
    LOOT,
    REPLANT_BODY,
    ROWS,
    leaked,
    loot_after_tenant2,
)
from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.drivers.psycopg import _connection, _connection_async, _connection_base
from tenantguard.errors import LeaseNotHeld, SessionStateRefused, UnsupportedOperation

PLANTED = "SELECT pg_catalog.current_setting('x.r7', true)"
SESSION_SET = "SELECT pg_catalog.set_config('x.r7', 'planted', false)"


def _without(monkeypatch: pytest.MonkeyPatch, defence: str) -> None:
    """The control: one defence taken away."""
    drivers = (_connection, _connection_async)
    if defence == "rendered":  # classify the Composable's as_string(), send as_bytes()
        for m in drivers:
            monkeypatch.setattr(m, "rendered", lambda query, cursor: query)
    elif defence == "exact":
        for m in (*drivers, _connection_base):
            monkeypatch.setattr(m, "exact", lambda value, kind, what: None)
    elif defence == "holder":
        monkeypatch.setattr(_connection_base, "PASS_NEEDS_HOLDER", False)
    elif defence == "setters":  # setters let through like COMMIT, unmarked
        codes = _connection_base.CONTROL_CODES | _connection_base.SETTER_CODES
        monkeypatch.setattr(_connection_base, "CONTROL_CODES", codes)
        monkeypatch.setattr(_connection_base, "SETTER_CODES", frozenset())
    elif defence == "handlers":  # count only handlers added through the overrides
        monkeypatch.setattr(_connection_base, "handler_lists", lambda conn: None)
    else:
        raise AssertionError(defence)


# ---------------------------------------------------------------- 1. Composable TOCTOU
#
# ConnState.note() classifies a Composable with query.as_string() (no context: psycopg's
# global adapters); psycopg sends query.as_bytes(cursor) (the cursor's adapters). A dumper
# registered on the tenant cursor's own adapters map (public API, not watched: only the
# connection's map is) makes sql.Literal(1) render as arbitrary SQL text when sent.


class InjectingIntDumper(Dumper):
    """``int`` as a literal: the payload (quote() is what sql.Literal puts in the text)."""

    payload = b"1"

    def dump(self, obj: Any) -> bytes:
        return str(obj).encode()

    def quote(self, obj: Any) -> bytes:
        return self.payload


@FAST_ONLY
@DEFENDED
def test_composable_literal_is_classified_as_sent(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _without(monkeypatch, "rendered")

    class Payload(InjectingIntDumper):
        payload = b"1; DEALLOCATE _tg_bind; " + REPLANT_BODY.strip().encode() + b"; SELECT 1"

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")  # the binding is prepared now
            with pytest.raises(SessionStateRefused):
                conn.execute("DEALLOCATE _tg_bind")
            with conn.transaction():  # the slow path: note() classifies as_string()
                cur = conn.cursor()
                cur.adapters.register_dumper(int, Payload)
                query = sql.SQL("SELECT {}").format(sql.Literal(1))
                if defended:  # what is classified is what is sent: DEALLOCATE, refused
                    with pytest.raises(UnsupportedOperation):
                        cur.execute(query)
                else:
                    cur.execute(query)
        loot = loot_after_tenant2(pool)
    assert leaked(loot) is not defended


class Flip:
    """A Decimal whose text alternates: what tenantguard classifies (as_string(), first),
    then what psycopg sends (as_bytes(cursor), second)."""

    def __new__(cls, seen: str, sent: str) -> Any:
        from decimal import Decimal

        texts = [seen, sent]

        class _Flip(Decimal):
            calls = 0

            def __str__(self) -> str:
                i = type(self).calls
                type(self).calls += 1
                return texts[i % 2]

        return _Flip("1")


@FAST_ONLY
@DEFENDED
def test_composable_in_executemany_is_rendered_once(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    """No transaction, no registration: executemany() on an autocommit lease. screened()
    classifies each parameter set's query with as_string(); psycopg then renders it again.
    Each is one statement (extended protocol)."""
    if not defended:
        _without(monkeypatch, "rendered")
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")  # the binding is prepared now
            for text in ("DEALLOCATE _tg_bind", REPLANT_BODY.strip()):
                q = sql.Composed([sql.Literal(Flip("SELECT 1", text))])
                conn.cursor().executemany(q, [()])
        loot = loot_after_tenant2(pool)
    assert leaked(loot) is not defended


# ------------------------------------- 2. a named cursor's MOVE/FETCH count as SQL text
#
# psycopg's ServerCursor.scroll(value) / fetchmany(size) render the count with
# sql.Literal(value) into "MOVE ... {value} FROM name" / "FETCH FORWARD {size} FROM name"
# and send it with the simple query protocol (several statements allowed). The generators
# are _scroll_gen / _fetch_gen, then let through by name: neither classified nor marked. A
# Decimal subclass's __str__ is what psycopg's numeric dumper puts in the text, unquoted.


def _decimal(text: str) -> Decimal:
    class Evil(Decimal):
        def __str__(self) -> str:
            return text

    return Evil("1")  # truthy: fetchmany(size) keeps it


def _replant_text(name: str) -> str:
    return f'0 FROM "{name}"; DEALLOCATE _tg_bind; {REPLANT_BODY.strip()}; MOVE 0'


@FAST_ONLY
@DEFENDED
@pytest.mark.parametrize("how", ["scroll", "fetchmany", "arraysize", "itersize"])
def test_a_named_cursors_count_is_an_int(saas, monkeypatch, how, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _without(monkeypatch, "exact")
    refused = False
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            pid = conn.info.backend_pid
            conn.execute("SELECT 1")  # the binding is prepared now
            with conn.transaction():
                cur = conn.cursor("c7")
                cur.execute("SELECT 1")
                evil = _decimal(_replant_text("c7"))
                try:
                    if how == "scroll":
                        cur.scroll(evil, "absolute")  # type: ignore[arg-type]
                    elif how == "fetchmany":
                        cur.fetchmany(evil)  # type: ignore[arg-type]
                    elif how == "arraysize":
                        cur.arraysize = evil  # type: ignore[assignment]
                        cur.fetchmany()
                    else:
                        cur.itersize = evil  # type: ignore[assignment]
                        next(cur)
                except psycopg.InternalError:  # "received 4 results": all already ran
                    pass
                except TypeError:  # refused before anything was sent
                    refused = True
        with tenant(2), pool.connection() as conn:
            assert conn.info.backend_pid == pid  # the same connection, not replaced
        loot = loot_after_tenant2(pool)
    assert refused is defended
    assert leaked(loot) is not defended


# ------------------------------------------- 3. stealing the one-shot _tg_pass (asyncio)
#
# A tenant cursor sets conn._tg_pass = True, then awaits psycopg's execute(), which first
# awaits conn.lock. asyncio.Lock is FIFO: a task queued on the lock before it (a plain
# psycopg.AsyncCursor, from any task) wakes first, and its conn.wait() consumes the pass:
# screen_wait returns before the owner check and before the mark. If the tenant cursor's
# wait is then cancelled (asyncio.timeout), nothing ever marks the connection.

ASYNC_EVIL = "SELECT pg_catalog.pg_sleep(0.5); DEALLOCATE _tg_bind; " + REPLANT_BODY.strip()


@FAST_ONLY
@DEFENDED
def test_async_pass_is_the_holders_not_a_queued_tasks(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _without(monkeypatch, "holder")

    async def run() -> tuple[str | None, Any, bool]:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                pid = conn.info.backend_pid
                await conn.execute("SELECT 1")  # the binding is prepared
                async with conn.transaction():
                    agen = conn.cursor().stream("SELECT 1")
                    await agen.__anext__()  # the suspended stream holds conn.lock
                    evil = asyncio.create_task(psycopg.AsyncCursor(conn).execute(ASYNC_EVIL))
                    await asyncio.sleep(0.05)  # it queues on the lock
                    async for _ in agen:  # the stream ends in this task: the lock
                        pass  # is handed to the queued task (woken, not yet run)
                    try:
                        async with asyncio.timeout(0.2):
                            # classified, _tg_pass = True, queued behind `evil`, which
                            # takes the pass; cancelled while `evil` still runs
                            await conn.cursor().execute("SELECT 1")
                    except TimeoutError:
                        pass
                    (outcome,) = await asyncio.gather(evil, return_exceptions=True)
                    assert isinstance(outcome, LeaseNotHeld) is defended, outcome
            async with pool.connection(tenant_id=2) as conn:
                same = conn.info.backend_pid == pid
                assert {r[0] for r in await (await conn.execute(ROWS)).fetchall()} == {2}
            async with pool.connection(tenant_id=1) as conn:
                row = await (await conn.execute(LOOT)).fetchone()
            return (None if row is None else row[0]), pool.guard_stats, same

    loot, _stats, same = asyncio.run(run())
    assert leaked(loot) is not defended
    assert same is not defended  # the refused try marked the connection: replaced


@DEFENDED
def test_async_kept_reference_cannot_take_the_next_tenants_pass(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    """Tenant 1 keeps its connection. During tenant 2's bound transaction, tenant 1's task
    holds the connection's (public, not underscored) ``lock`` and queues a plain
    psycopg.AsyncCursor on it; tenant 2's next statement sets the pass and queues behind;
    tenant 1 releases the lock: its cursor runs first, with tenant 2's pass, inside tenant
    2's bound transaction. (The connection is discarded afterwards: tenant 2's own wait
    finds no pass and marks it; the rows are already read.)"""
    if not defended:
        _without(monkeypatch, "holder")

    async def run() -> tuple[list[Any], list[BaseException]]:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                await conn.execute("SELECT 1")
                kept = conn
            stolen: list[Any] = []
            errors: list[BaseException] = []
            in_tx = asyncio.Event()

            async def reader() -> None:
                try:
                    cur = await psycopg.AsyncCursor(kept).execute(ROWS)
                    stolen.extend(await cur.fetchall())
                except BaseException as exc:
                    errors.append(exc)

            async def attacker() -> None:
                await in_tx.wait()
                await kept.lock.acquire()
                task = asyncio.create_task(reader())
                await asyncio.sleep(0.05)  # reader queued on the lock; then the victim
                kept.lock.release()
                await task

            att = asyncio.create_task(attacker())
            async with pool.connection(tenant_id=2) as conn, conn.transaction():
                await conn.execute("SELECT 1")
                in_tx.set()
                await asyncio.sleep(0.01)  # (any await of the request: the attacker runs)
                await conn.execute("SELECT 1")  # the pass is set, then it waits the lock
            await att
            return stolen, errors

    stolen, errors = asyncio.run(run())
    if defended:
        assert stolen == [] and len(errors) == 1 and isinstance(errors[0], LeaseNotHeld)
    else:
        assert errors == [] and stolen and {r[0] for r in stolen} == {2}


# ------------------------- 4. psycopg's base Connection methods skip tenantguard's overrides
#
# Round 6 closed psycopg.Cursor.execute(conn.cursor(), ...). The same trick on the
# connection: psycopg.Connection.set_read_only(conn, ...) etc. are psycopg's public methods;
# called on a TenantConnection they skip the override (no leased(), no mark). Their
# generators were let through by name (holder), or they do no conn.wait()
# at all (cancel, cancel_safe, close, add_notice_handler).


@DEFENDED
def test_base_set_read_only_never_reaches_the_next_lease(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    """``psycopg.Connection.set_read_only(conn, True)`` skips the override: tenant 2's
    writes would fail on the same connection."""
    if not defended:
        _without(monkeypatch, "setters")
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            pid = conn.info.backend_pid
            psycopg.Connection.set_read_only(conn, True)
        with tenant(2), pool.connection() as conn:
            inherited = conn.info.backend_pid == pid and conn.read_only is True
    assert inherited is not defended


@DEFENDED
def test_base_setters_never_reach_the_next_lease(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _without(monkeypatch, "setters")
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            psycopg.Connection.set_autocommit(conn, False)
            psycopg.Connection.set_isolation_level(conn, psycopg.IsolationLevel.SERIALIZABLE)
            psycopg.Connection.set_deferrable(conn, True)
        with tenant(2), pool.connection() as conn:
            inherited = (
                conn.autocommit is False
                and conn.isolation_level == psycopg.IsolationLevel.SERIALIZABLE
            )
            if not inherited:
                row = conn.execute("SHOW transaction_isolation").fetchone()
                assert row == ("read committed",)
    assert inherited is not defended


def test_async_base_setter_never_reaches_the_next_lease(saas) -> None:  # type: ignore[no-untyped-def]
    async def run() -> bool:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                await psycopg.AsyncConnection.set_read_only(conn, True)
            async with pool.connection(tenant_id=2) as conn:
                return conn.read_only is True

    assert asyncio.run(run()) is False


@DEFENDED
def test_a_handler_added_through_psycopgs_base_method_never_reaches_the_next_lease(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:
        _without(monkeypatch, "handlers")
    seen: list[tuple[Any, str]] = []

    def spy(diag: Any) -> None:  # the attacker's code, in whoever's lease
        seen.append((threading.get_ident(), diag.message_primary))

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            pid = conn.info.backend_pid
            psycopg.Connection.add_notice_handler(conn, spy)
        with tenant(2), pool.connection() as conn:
            assert (conn.info.backend_pid == pid) is not defended
            with conn.transaction():
                conn.execute("SET LOCAL client_min_messages = 'notice'")
                try:
                    with conn.transaction():  # a savepoint; the victim's own notice:
                        conn.execute("ROLLBACK")  # a WARNING from the server
                except Exception:
                    pass
    assert bool(seen) is not defended


@DEFENDED
def test_async_kept_reference_retrying_never_rides_the_next_tenants_pass(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    """As above without touching conn.lock: tenant 1's task just retries a plain
    psycopg.AsyncCursor on its kept connection (each refused try sends nothing). A try
    made while tenant 2's statement is on the wire queues on conn.lock; the statement
    ends, tenant 2's request goes straight on to its next statement, which sets the pass
    and queues behind it: the attacker's cursor runs first, with the pass, inside tenant
    2's bound transaction. Tenant 2's code is ordinary: statements in a transaction."""
    if not defended:
        _without(monkeypatch, "holder")

    async def run() -> tuple[list[Any], int]:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                await conn.execute("SELECT 1")
                kept = conn
            stolen: list[Any] = []
            refused = 0
            done = False

            async def attacker() -> None:
                nonlocal refused
                while not done and not stolen:
                    # never between leases (a refused try there marks the connection,
                    # which is then replaced at checkout): only once it is in a
                    # transaction again (ConnectionInfo, public, no I/O)
                    if kept.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                        await asyncio.sleep(0)
                        continue
                    try:
                        cur = await psycopg.AsyncCursor(kept).execute(ROWS)
                        stolen.extend(await cur.fetchall())
                    except LeaseNotHeld:
                        refused += 1
                        await asyncio.sleep(0)

            att = asyncio.create_task(attacker())
            await asyncio.sleep(0)
            # the victim: tenant 2, an ordinary request
            async with pool.connection(tenant_id=2) as conn, conn.transaction():
                for _ in range(20):
                    await conn.execute("SELECT pg_catalog.pg_sleep(0.001)")
            done = True
            await att
            return stolen, refused

    stolen, refused = asyncio.run(run())
    if defended:
        assert stolen == [] and refused > 0
    else:
        assert stolen and {r[0] for r in stolen} == {2}


@DEFENDED
def test_sync_kept_reference_retrying_never_rides_the_next_tenants_pass(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    """The same with threads: a thread blocked on conn.lock (threading.Lock) during tenant
    2's statement owns the lock the moment it is released, but needs the GIL to go on;
    tenant 2's thread sets the pass for its next statement and blocks on the lock, giving
    up the GIL: the attacker's conn.wait() consumes tenant 2's pass."""
    if not defended:
        _without(monkeypatch, "holder")
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")
            kept = conn
        stolen: list[Any] = []
        refused = [0]
        done = threading.Event()

        def attacker() -> None:
            while not done.is_set() and not stolen:
                if kept.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    continue
                try:
                    stolen.extend(psycopg.Cursor(kept).execute(ROWS).fetchall())
                except LeaseNotHeld:
                    refused[0] += 1
                except psycopg.Error:
                    pass

        t = threading.Thread(target=attacker, daemon=True)
        t.start()
        with tenant(2), pool.connection() as conn, conn.transaction():
            for _ in range(50):
                conn.execute("SELECT pg_catalog.pg_sleep(0.001)")
                if stolen:
                    break
        done.set()
        t.join(5)
    if defended:
        assert stolen == [] and refused[0] > 0
    else:
        assert stolen and {r[0] for r in stolen} == {2}


# ------------------------ 6. a generator's __name__ is writable: the name-based allowlist spoofed
#
# screen_wait trusts gen.__name__. psycopg's cursors call self._conn.wait(gen): a cursor
# built on a stand-in object that forwards everything to the tenant connection, except
# that its wait() renames the generator before calling the real conn.wait(), sends any SQL
# as "psycopg's own command": neither classified nor marked. (Duck typing on psycopg's
# public Cursor class; the attacker never touches pgconn itself.)


class _Renaming:
    def __init__(self, conn: Any) -> None:
        object.__setattr__(self, "_real", conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_real"), name)

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        gen.__name__ = "_commit_gen"
        return object.__getattribute__(self, "_real").wait(gen, *args, **kwargs)


@FAST_ONLY
def test_a_renamed_generator_is_not_psycopgs_commit(saas) -> None:  # type: ignore[no-untyped-def]
    """Known by code object (read-only), not by name: the SQL is unclassified, so the
    connection is closed at checkin (the control of the name-based check it replaces is
    the seventh review's finding itself)."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")
            cur = psycopg.Cursor(_Renaming(conn))  # type: ignore[arg-type]
            cur.execute("DEALLOCATE _tg_bind")
            cur.execute(REPLANT_BODY)
        loot = loot_after_tenant2(pool)
        stats = pool.guard_stats
    assert not leaked(loot) and stats.by_kind["unscreened_sql"] == 1


@FAST_ONLY
@DEFENDED
def test_async_named_cursors_scroll_count_is_an_int(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _without(monkeypatch, "exact")

    async def run() -> str | None:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                await conn.execute("SELECT 1")
                async with conn.transaction():
                    cur = conn.cursor("c7a")
                    await cur.execute("SELECT 1")
                    try:
                        await cur.scroll(_decimal(_replant_text("c7a")), "absolute")  # type: ignore[arg-type]
                    except psycopg.InternalError:
                        pass
                    except TypeError:
                        assert defended
            async with pool.connection(tenant_id=2) as conn:
                await conn.execute(ROWS)
            async with pool.connection(tenant_id=1) as conn:
                row = await (await conn.execute(LOOT)).fetchone()
            return None if row is None else row[0]

    loot = asyncio.run(run())
    assert leaked(loot) is not defended


@DEFENDED
def test_a_named_cursors_name_is_a_str(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    """The cursor's name: close() of a cursor never described renders
    "... WHERE name = {Literal(name)}"."""
    if not defended:
        _without(monkeypatch, "exact")
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            pid = conn.info.backend_pid
            conn.execute("SELECT 1")
            with conn.transaction():
                name = _decimal(f"'x'; {SESSION_SET}; SELECT 1 WHERE false")
                if defended:
                    with pytest.raises(TypeError, match="name must be a str"):
                        conn.cursor(name)  # type: ignore[call-overload]
                else:
                    cur = conn.cursor(name)  # type: ignore[call-overload]
                    try:
                        cur.close()
                    except Exception:
                        pass  # psycopg fails after the statements ran
        with tenant(2), pool.connection() as conn:
            same = conn.info.backend_pid == pid
            row = conn.execute(PLANTED).fetchone()
    assert same and (row == ("planted",)) is not defended


def test_psycopgs_base_scroll_on_a_tenant_cursor_is_unscreened(saas) -> None:  # type: ignore[no-untyped-def]
    """FETCH/MOVE/CLOSE pass as tenantguard's own only through its cursor's methods (which
    check the count): psycopg's base method on it sends unclassified, and the connection
    is closed at checkin."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            pid = conn.info.backend_pid
            with conn.transaction():
                cur = conn.cursor("c7b")
                cur.execute("SELECT 1")
                psycopg.ServerCursor.scroll(cur, 0, "absolute")
        with tenant(2), pool.connection() as conn:
            assert conn.info.backend_pid != pid
        assert pool.guard_stats.by_kind["unscreened_sql"] == 1
