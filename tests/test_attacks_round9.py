"""The ninth adversarial review, each attack next to its control.

1. A pipeline whose first statement fails at run time, then more statements: psycopg
   counted the Parses the server skipped as prepared, and every later tenant's
   ``executemany()``, pipeline or transaction on that connection failed. Now a pipeline
   (or an ``executemany``) that raised replaces the connection at checkin.
2. psycopg's own ``DEALLOCATE ALL`` after a ROLLBACK dropped the prepared binding; a query
   counted to psycopg's threshold then failed the fast path's one retry. Now the retry
   forgets psycopg's statements on both sides first.
3. ``conn.lock = Planted(...)``: the planted object ran code inside every later lease and
   read its rows (and, with signed contexts, its token). A connection whose public
   attributes were replaced or added is discarded at checkout now.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

from attack_payloads import DEFENDED, FAST_ONLY, PSYCOPG_PREPARES
from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.drivers.psycopg import _connection, _connection_async, _fastpath
from tenantguard.drivers.psycopg._pool_base import PoolCore
from test_signing import signed  # noqa: F401 (module fixture: signed install + key)

# Fails at run time, after a delay: the client has queued every later statement of the
# pipeline (and their bindings) before the error comes back.
SLOW_FAILURE = "SELECT pg_catalog.pg_sleep(0.3), 1/(0*pg_catalog.random())::int"
INSERT = "INSERT INTO app.invoices (tenant_id, amount) VALUES (%s, %s)"


def _pipelines_unmarked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: a pipeline that raised leaves the connection in the pool."""
    for m in (_connection, _connection_async):
        monkeypatch.setattr(m, "PIPELINE_ABORTED", False)


def _poison_prepared_cache(conn: Any) -> None:
    """Tenant 1's code: public API, legit-looking statements."""
    with conn.transaction():
        conn.execute("SELECT 1")
    try:
        with conn.pipeline():
            conn.execute(SLOW_FAILURE)
            for _ in range(10):
                conn.execute("SELECT 1")
    except psycopg.errors.DivisionByZero:
        pass


def _later_requests(pool: TenantPool) -> list[BaseException | None]:
    """Tenants 2 and 3's ordinary requests on the same pool: what each raised."""
    outcomes: list[BaseException | None] = []
    for tid in (2, 3):
        for request in (
            lambda c, t=tid: c.cursor().executemany(INSERT, [(t, 1), (t, 2)]),
            lambda c: [c.execute("SELECT 1"), c.execute("SELECT count(*) FROM app.invoices")],
            lambda c: c.execute("SELECT 1"),
        ):
            try:
                with tenant(tid), pool.connection() as conn:
                    if request is not None:
                        with conn.pipeline():
                            request(conn)
            except psycopg.Error as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
    return outcomes


@DEFENDED
def test_an_aborted_pipeline_never_fails_the_next_tenants_requests(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _pipelines_unmarked(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, kwargs=PSYCOPG_PREPARES) as pool:
        with tenant(1), pool.connection() as conn:
            _poison_prepared_cache(conn)
        outcomes = _later_requests(pool)
        kinds = pool.guard_stats.by_kind
    failed = [o for o in outcomes if o is not None]
    if defended:
        assert failed == [] and kinds["pipeline_aborted"] == 1
    else:
        assert failed and all(isinstance(o, psycopg.errors.InvalidSqlStatementName) for o in failed)


def test_async_an_aborted_pipeline_never_fails_the_next_tenants_requests(saas) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                async with conn.transaction():
                    await conn.execute("SELECT 1")
                try:
                    async with conn.pipeline():
                        await conn.execute(SLOW_FAILURE)
                        for _ in range(10):
                            await conn.execute("SELECT 1")
                except psycopg.errors.DivisionByZero:
                    pass
            async with pool.connection(tenant_id=2) as conn:
                await conn.cursor().executemany(INSERT, [(2, 1)])
                async with conn.pipeline():
                    await conn.execute("SELECT 1")

    asyncio.run(main())


TENANT2_QUERY = "SELECT count(*) FROM app.invoices"


@FAST_ONLY
@DEFENDED
def test_psycopgs_deallocate_all_never_fails_the_next_tenants_request(
    saas, monkeypatch, defended
) -> None:  # type: ignore[no-untyped-def]
    """psycopg clears its prepared cache on a rollback and sends DEALLOCATE ALL, which drops
    the prepared binding too; tenant 1 then counts tenant 2's query to psycopg's threshold
    in transactions (the slow path). Tenant 2's fast-path request: the binding's Bind
    fails, the query's Parse is skipped but counted; the retry must not trust it."""
    if not defended:

        def keep(conn: Any) -> Any:
            return
            yield

        monkeypatch.setattr(_fastpath, "forget_prepared", keep)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            for _ in range(7):
                conn.execute("SELECT 1")  # psycopg prepares it: its cache is not empty
            with conn.transaction():
                conn.execute("SELECT 1")
                raise psycopg.Rollback()  # ROLLBACK; psycopg: DEALLOCATE ALL
            for _ in range(5):
                with conn.transaction():
                    conn.execute(TENANT2_QUERY).fetchone()
        with tenant(2), pool.connection() as conn:
            if defended:
                assert conn.execute(TENANT2_QUERY).fetchone()[0] >= 4
            else:
                with pytest.raises(Exception) as info:
                    conn.execute(TENANT2_QUERY).fetchone()
                assert type(info.value).__name__ == "BindStatementMissing"


class PlantedLock:
    """Tenant 1's object in place of the connection's lock: it behaves as the lock and,
    each time a later lease's statement takes it, first runs *query* on the connection,
    in that lease's thread and tenant context."""

    def __init__(self, conn: Any, inner: Any, query: str) -> None:
        self.conn, self.inner, self.query = conn, inner, query
        self.busy = False
        self.loot: list[Any] = []

    def __enter__(self) -> Any:
        if not self.busy:
            self.busy = True
            try:
                self.loot.extend(self.conn.cursor().execute(self.query).fetchall())
            except Exception:
                pass
            finally:
                self.busy = False
        return self.inner.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self.inner.__exit__(*exc)

    def acquire(self, *a: Any, **k: Any) -> Any:
        return self.inner.acquire(*a, **k)

    def release(self) -> None:
        self.inner.release()

    def locked(self) -> bool:
        return bool(self.inner.locked())


def _unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: every connection psycopg_pool hands out is leased."""
    monkeypatch.setattr(PoolCore, "checkout_refused", lambda self, conn, stale=False: False)


def _plant(pool: TenantPool, query: str) -> PlantedLock:
    with tenant(1), pool.connection() as conn:
        conn.execute("SELECT 1")
        planted = PlantedLock(conn, conn.lock, query)
        conn.lock = planted
    return planted


@FAST_ONLY
@DEFENDED
def test_a_planted_lock_never_runs_in_the_next_lease(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _unchecked(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        planted = _plant(pool, "SELECT tenant_id, note FROM app.invoices")
        with tenant(2), pool.connection() as conn:  # tenant 2's ordinary request
            assert {r[0] for r in conn.execute("SELECT tenant_id FROM app.invoices")} == {2}
        kinds = pool.guard_stats.by_kind
    if defended:
        assert planted.loot == [] and kinds["attribute_replaced"] == 1
    else:
        assert {r[0] for r in planted.loot} == {2}


def test_a_connection_with_replaced_or_added_public_attributes_is_discarded(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        for name in ("lock", "execute", "cursor", "commit", "anything"):
            with tenant(1), pool.connection() as conn:
                pid = conn.info.backend_pid
                planted = threading.Lock() if name == "lock" else getattr(conn, name, None)
                setattr(conn, name, planted)
            with tenant(2), pool.connection() as conn:
                assert conn.info.backend_pid != pid, name
                assert {r[0] for r in conn.execute("SELECT tenant_id FROM app.invoices")} == {2}
        with tenant(1), pool.connection() as conn:  # psycopg's guarded properties: their own
            pid = conn.info.backend_pid  # setters mark the connection (client_state)
            conn.row_factory = conn.row_factory
        with tenant(2), pool.connection() as conn:
            assert conn.info.backend_pid != pid
        assert pool.guard_stats.by_kind["attribute_replaced"] == 5


@FAST_ONLY
@DEFENDED
def test_signed_contexts_a_planted_lock_never_steals_the_next_token(
    signed,  # noqa: F811 (the fixture imported above)
    monkeypatch,
    defended,
) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _unchecked(monkeypatch)
    s, key = signed
    with TenantPool(s.app_dsn, min_size=1, max_size=1, signing_key=key) as pool:
        thief = _plant(pool, "SELECT pg_catalog.current_setting('app.tenant_id')")
        with tenant(2), pool.connection() as conn:
            assert {r[0] for r in conn.execute("SELECT tenant_id FROM app.invoices")} == {2}
    if defended:
        assert thief.loot == []
        return
    token = thief.loot[0][0]
    assert token.endswith(".2")  # tenant 2's signed context, replayable within its lifetime
