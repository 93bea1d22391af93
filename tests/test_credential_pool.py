"""``CredentialPool``: per-tenant logins behind a pool, on the suite's server.

(The same pool logging in with real password checks runs in test_credentials.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from _access import Access, build_access, drop_tenant_roles
from _access import sessions as _sessions
from tenantguard import AdminCredentialSource, CredentialPool, tenant
from tenantguard.errors import NoTenantContext


@pytest.fixture(scope="module")
def db(scratch) -> Iterator[Access]:  # type: ignore[no-untyped-def]
    access = build_access(scratch)
    try:
        yield access
    finally:
        drop_tenant_roles(access)


def _pool(db: Access, **kwargs: object) -> CredentialPool:
    source = AdminCredentialSource(db.admin_dsn, ttl="15m", slot="pool")
    return CredentialPool(db.s.admin_dsn, source=source, **kwargs)  # type: ignore[arg-type]


def test_each_tenant_gets_its_own_login(db: Access) -> None:
    with _pool(db, max_size=4) as pool:
        seen = {}
        for t in (1, 2, 3):
            with tenant(t), pool.connection() as conn:
                user = conn.execute("SELECT session_user").fetchone()
                rows = conn.execute("SELECT DISTINCT tenant_id FROM app.invoices").fetchall()
                conn.execute("SELECT set_config('app.tenant_id', '2', false)")  # no effect
                again = conn.execute("SELECT DISTINCT tenant_id FROM app.invoices").fetchall()
            assert rows == again == [(t,)]
            seen[t] = user
        assert len(set(seen.values())) == 3
        with pytest.raises(NoTenantContext):
            with pool.connection():
                pass


def test_cap_across_tenants_and_lru_eviction(db: Access) -> None:
    with _pool(db, max_size=2, timeout=0.5) as pool:
        with pool.connection(1), pool.connection(2):
            assert pool.stats()["open"] == 2
            with pytest.raises(PoolTimeout):
                with pool.connection(3):
                    pass
        assert pool.stats() == {"open": 2, "leased": 0, "idle": 2, "tenants": 2}
        # Tenant 3 takes the least recently used idle connection's place (tenant 1's).
        with pool.connection(3) as conn:
            assert conn.execute("SELECT DISTINCT tenant_id FROM app.invoices").fetchall() == [(3,)]
            assert pool.stats()["open"] == 2
        assert pool.stats()["open"] == 2


def test_waiter_gets_a_connection_when_one_is_returned(db: Access) -> None:
    with _pool(db, max_size=1, timeout=5) as pool:
        got: list[int] = []

        def other() -> None:
            with pool.connection(2) as conn:
                got.append(
                    conn.execute("SELECT DISTINCT tenant_id FROM app.invoices").fetchone()[0]
                )  # type: ignore[index]

        with pool.connection(1):
            t = threading.Thread(target=other)
            t.start()
            time.sleep(0.3)
            assert not got  # waiting: the cap holds
        t.join(5)
        assert got == [2]


def test_idle_connections_are_evicted(db: Access) -> None:
    with _pool(db, max_size=3, max_idle=0.3) as pool:
        with pool.connection(1) as conn:
            pass
        assert pool.stats()["idle"] == 1 and not conn.closed
        time.sleep(0.5)
        assert pool.evict_idle() == 1
        assert conn.closed and pool.stats()["open"] == 0


def test_revoke_closes_that_tenants_connections(db: Access) -> None:
    with _pool(db, max_size=4) as pool:
        with pool.connection(2) as other:
            pass
        with pool.connection(1) as idle_conn:
            user = idle_conn.execute("SELECT session_user").fetchone()[0]  # type: ignore[index]
        with pool.connection(1) as leased:
            assert leased is idle_conn
            with pool.connection(1) as second:
                assert second is not leased
            assert _sessions(db, str(user)) == 2
            closed = pool.revoke(1)
            assert closed == 2  # one idle now, one leased on return
            assert second.closed and not leased.closed
        assert leased.closed
        assert not other.closed  # tenant 2's connection stays
        time.sleep(0.2)
        assert _sessions(db, str(user)) == 0
        with db.admin() as admin:  # the source revoked the logins in the database too
            row = admin.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname = %s", (str(user),)
            ).fetchone()
        assert row == (0,)
        # The tenant can get a new credential afterwards.
        with pool.connection(1) as conn:
            assert conn.execute("SELECT DISTINCT tenant_id FROM app.invoices").fetchall() == [(1,)]


def test_pool_refuses_user_and_password_kwargs(db: Access) -> None:
    from tenantguard.errors import UsageError

    with pytest.raises(UsageError):
        _pool(db, kwargs={"password": "x"})
    with pytest.raises(UsageError):
        _pool(db, max_size=0)


def test_connection_left_in_a_transaction_is_rolled_back(db: Access) -> None:
    with _pool(db, max_size=1) as pool:
        with pool.connection(3) as conn:
            conn.execute("BEGIN")
            conn.execute("UPDATE app.invoices SET note = 'uncommitted' WHERE tenant_id = 3")
        with pool.connection(3) as again:
            assert again is conn
            assert again.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert again.execute(
                "SELECT count(*) FROM app.invoices WHERE note = 'uncommitted'"
            ).fetchone() == (0,)
