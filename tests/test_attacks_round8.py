"""The eighth adversarial review, each attack next to its control.

1. A query that is a ``str`` or ``bytes`` subclass (or a ``sql.Composable`` rendering to
   one) compared equal to a statement the classifier had judged clean, while psycopg sent
   its ``encode()`` or buffer: planted SQL; and, with ``prepare=True``, psycopg's
   prepared-statement cache kept the attacker's statement under the innocent query's key,
   for the next tenant to run (signed contexts too). Now every query becomes an exact
   ``str``/``bytes`` before it is classified (``rendered``).
2. ``pool.pool.putconn(conn)`` mid-lease handed the connection to another tenant while the
   first lease went on; a kept reference holding ``conn.lock`` hung the next lease. Now a
   connection still leased, or whose lock is held, is discarded at checkout.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from attack_payloads import (
    DEFENDED,
    FAST_ONLY,
    LOOT,
    REPLANT_BODY,
    ROWS,
    leaked,
    loot_after_tenant2,
    psycopgs_own_conversion,
)
from conftest import Scratch, build_saas, make_scratch
from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.admin import create_key
from tenantguard.drivers.psycopg import _connection, _connection_async, _fastpath, _internals
from tenantguard.drivers.psycopg._pool_base import PoolCore
from tenantguard.errors import LeaseNotHeld, UnsupportedOperation


def _unrendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: queries reach the classifier and psycopg as the caller made them."""
    for m in (_connection, _connection_async):
        monkeypatch.setattr(m, "rendered", lambda query, cursor: query)
    monkeypatch.setattr(_fastpath, "exact_bytes", lambda pgq: None)
    # (and psycopg's own prepared-statement cache, which takes any key: the twelfth review's
    # exact keys refuse a bytes subclass too)
    monkeypatch.setattr(_internals, "exact_prepared", lambda conn, **kw: False)
    # (and psycopg's own query conversion: the fifteenth review's exact bytes stop it too)
    psycopgs_own_conversion(monkeypatch)


def _checkout_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: every connection psycopg_pool hands out is leased."""
    monkeypatch.setattr(PoolCore, "checkout_refused", lambda self, conn, stale=False: False)


EVIL = "DEALLOCATE _tg_bind; " + REPLANT_BODY.strip()


# ---------------------------------------------------------------- 1. str subclass
class TwoFaced(str):
    """Classified as its str value; psycopg sends query.encode(), which is overridden."""

    sent: bytes = b""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        return self.sent


def _twofaced(seen: str, sent: str) -> TwoFaced:
    q = TwoFaced(seen)
    q.sent = sent.encode()
    return q


def _attempt(defended: bool, send: Any) -> None:
    """Defended, the planted statement is seen for what it is and refused."""
    if defended:  # (refused: as session state, or as a set_config name it cannot read)
        with pytest.raises(UnsupportedOperation):
            send()
    else:
        send()


@FAST_ONLY
@DEFENDED
def test_a_str_subclass_query_is_classified_as_sent(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _unrendered(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")  # the binding is prepared now
            with conn.transaction():
                conn.execute("SELECT 1")  # the str "SELECT 1" is classified (cached) now
                # defended: its characters ("SELECT 1") are what is sent, not its encode()
                conn.cursor().execute(_twofaced("SELECT 1", EVIL))
        loot = loot_after_tenant2(pool)
    assert leaked(loot) is not defended


# ------------------------------------- 2. bytes subclass poisons psycopg's prepared cache
class Spoof(bytes):
    """Bytes that hash and compare equal to *as_*: the classifier's cache and psycopg's
    prepared-statement cache take it for *as_*; libpq sends its real content."""

    as_: bytes = b""

    def __hash__(self) -> int:
        return hash(self.as_)

    def __eq__(self, other: object) -> bool:
        return bytes.__eq__(self.as_, other) if isinstance(other, bytes) else NotImplemented

    def __ne__(self, other: object) -> bool:
        r = self.__eq__(other)
        return r if r is NotImplemented else not r


def _spoof(real: str, as_: str) -> Spoof:
    s = Spoof(real.encode())
    s.as_ = as_.encode()
    return s


# One statement (extended protocol), the shape of ROWS, that also copies every row the
# current binding can see into a session setting.
STEAL_ROWS = (
    "SELECT i.tenant_id, i.amount FROM app.invoices i, "
    "(SELECT pg_catalog.set_config('x.loot', COALESCE((SELECT pg_catalog.string_agg("
    "j.tenant_id || ':' || j.amount, ',' ORDER BY j.amount) FROM app.invoices j), '') "
    "|| ' ' || COALESCE(pg_catalog.current_setting('x.loot', true), ''), false)) s "
    "ORDER BY i.amount"
)


def _poison(pool: TenantPool, defended: bool) -> str | None:
    with tenant(1), pool.connection() as conn:
        conn.execute(ROWS.encode())  # ROWS's bytes are classified (cached) now
        _attempt(
            defended,
            lambda: conn.execute(_spoof(STEAL_ROWS, ROWS), prepare=True),  # type: ignore[arg-type]
        )
    # tenant 2, an innocent request, runs ROWS: psycopg would find "it" prepared
    return loot_after_tenant2(pool)


@DEFENDED
def test_a_bytes_subclass_cannot_poison_the_prepared_statement_cache(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _unrendered(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        assert leaked(_poison(pool, defended)) is not defended


# ---- 2b. the same under signed tenant contexts (where SQL cannot re-bind its own lease)


@pytest.fixture(scope="module")
def signed(server_dsn: str) -> Iterator[tuple[Scratch, Any]]:
    for s in make_scratch(server_dsn):
        build_saas(s, signed=True)
        with s.admin() as conn:
            key = create_key(conn)
        yield s, key


@DEFENDED
def test_signed_contexts_too_a_bytes_subclass_cannot_poison_the_cache(
    signed, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _unrendered(monkeypatch)
    s, key = signed
    with TenantPool(s.app_dsn, min_size=1, max_size=1, signing_key=key) as pool:
        with tenant(1), pool.connection() as conn:
            # control: signed contexts stop re-binding inside one's own lease
            with conn.transaction():
                conn.execute("SELECT pg_catalog.set_config('app.tenant_id', '2', true)")
                try:
                    n = conn.execute(
                        "SELECT count(*) FROM app.invoices WHERE tenant_id = 2"
                    ).fetchone()[0]
                except psycopg.errors.InsufficientPrivilege:
                    n = 0
            assert n == 0
        assert leaked(_poison(pool, defended)) is not defended


# ------------------------------------ 3. pool.pool.putconn() of one's own leased connection
@DEFENDED
def test_pool_pool_putconn_mid_lease_never_reaches_another_tenant(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    """The attacker hands its leased connection back to psycopg_pool directly (no checkin
    guard); tenant 2's request in another thread gets it; the attacker's block then ends,
    runs the checkin (ending *tenant 2's* lease) and puts it back a second time. Defended,
    tenant 2 gets another connection; only the attacker's own block fails."""
    if not defended:
        _checkout_unchecked(monkeypatch)
    shared: list[bool] = []
    got, go, errors, done = threading.Event(), threading.Event(), [], threading.Event()

    def victim() -> None:
        try:
            with tenant(2), pool.connection() as c2:
                shared.append(c2 is conn)
                assert {r[0] for r in c2.execute(ROWS)} == {2}
                got.set()
                go.wait(10)
                try:
                    c2.execute(ROWS)  # tenant 2 second statement in its own lease
                except Exception as exc:
                    errors.append(exc)
                    raise
        except Exception as exc:
            errors.append(exc)
        finally:
            done.set()

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        try:
            with tenant(1), pool.connection() as conn:
                conn.execute("SELECT 1")
                pool.pool.putconn(conn)  # public psycopg_pool API on tenantguard's pool
                t = threading.Thread(target=victim)
                t.start()
                assert got.wait(10)
        except Exception:
            pass
        go.set()  # the attacker's lease ended: checkin + a second putconn
        assert done.wait(10)
        t.join()
    if defended:
        assert shared == [False] and errors == []
    else:
        assert shared == [True] and errors and isinstance(errors[0], LeaseNotHeld), errors


# ------------------------------------ 4. a kept reference holds conn.lock (public name)
@DEFENDED
def test_a_lock_held_by_a_kept_reference_never_hangs_the_next_lease(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _checkout_unchecked(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, timeout=5) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")
            kept = conn
        assert kept.lock.acquire(blocking=False)  # after the lease: nothing refuses it
        result: list[Any] = []

        def victim() -> None:
            try:
                with tenant(2), pool.connection() as c2:
                    result.append(c2 is kept)
                    result.append(len(c2.execute(ROWS).fetchall()))
            except Exception as exc:
                result.append(exc)

        t = threading.Thread(target=victim, daemon=True)
        t.start()
        t.join(3)
        hung = t.is_alive()
        kept.lock.release()
        t.join(10)
    if defended:  # another connection, at once
        assert not hung and result == [False, 4]
    else:  # tenant 2 got the connection and hung on its first statement
        assert hung and result[0] is True


# ---------------------------------------------------------------- 1b. async, COPY path
@FAST_ONLY
@DEFENDED
def test_async_a_str_subclass_query_is_classified_as_sent(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _unrendered(monkeypatch)

    async def run() -> str | None:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                await conn.execute("SELECT 1")
                async with conn.transaction():
                    await conn.execute("SELECT 1")
                    try:
                        await conn.cursor().execute(_twofaced("SELECT 1", EVIL))
                    except UnsupportedOperation:
                        assert defended
            async with pool.connection(tenant_id=2) as conn:
                assert {r[0] for r in await (await conn.execute(ROWS)).fetchall()} == {2}
            async with pool.connection(tenant_id=1) as conn:
                row = await (await conn.execute(LOOT)).fetchone()
            return None if row is None else row[0]

    assert leaked(asyncio.run(run())) is not defended


class SpoofSQL(sql.SQL):
    """A Composable whose as_bytes() returns a Spoof: ``rendered`` keeps it as is."""

    def as_bytes(self, context: Any = None) -> bytes:
        return _spoof(EVIL, "SELECT 1")


@FAST_ONLY
@DEFENDED
def test_a_composable_rendering_to_a_bytes_subclass_is_classified_as_sent(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:
        _unrendered(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")  # b"SELECT 1" classified (cached) by the fast path
            with conn.transaction():
                _attempt(defended, lambda: conn.cursor().execute(SpoofSQL("SELECT 1")))
        loot = loot_after_tenant2(pool)
    assert leaked(loot) is not defended
