"""``AsyncCredentialPool``: per-tenant logins behind an asyncio pool.

The pool's tests run on two servers: an embedded PostgreSQL of this module's own whose
``pg_hba.conf`` asks every role but the superuser for scram-sha-256 (so the passwords the
pool logs in with are checked: see test_credentials.py), and the suite's server
(PostgreSQL 15 or 18, trust authentication: the policies, not the passwords).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from _access import Access, build_access, drop_tenant_roles, password_access, password_server
from _access import sessions as _sessions
from tenantguard import AdminCredentialSource, AsyncCredentialPool, Credential, tenant
from tenantguard.admin.credentials import issue_credential
from tenantguard.errors import ConnectionFailed, NoTenantContext, UsageError

T = TypeVar("T")


@pytest.fixture(scope="module")
def pw() -> Iterator[Access]:
    """The password-checking server: scram-sha-256 for every role but the superuser."""
    with password_server() as (dsn, hba), password_access(dsn, hba) as access:
        yield access


@pytest.fixture(scope="module")
def suite(scratch) -> Iterator[Access]:  # type: ignore[no-untyped-def]
    access = build_access(scratch)
    try:
        yield access
    finally:
        drop_tenant_roles(access)


@pytest.fixture(params=["password-server", "suite-server"])
def db(request: pytest.FixtureRequest) -> Access:
    return request.getfixturevalue("pw" if request.param == "password-server" else "suite")  # type: ignore[no-any-return]


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), 60))


def _pool(db: Access, slot: str = "apool", **kwargs: Any) -> AsyncCredentialPool:
    source = AdminCredentialSource(db.admin_dsn, ttl="15m", slot=slot)
    return AsyncCredentialPool(db.s.admin_dsn, source=source, **kwargs)


async def _tenants(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    cur = await conn.execute("SELECT DISTINCT tenant_id FROM app.invoices ORDER BY 1")
    return [int(r[0]) for r in await cur.fetchall()]


async def _one(conn: psycopg.AsyncConnection[Any], query: str) -> Any:
    cur = await conn.execute(query)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


# --------------------------------------------------------------------------- isolation


def test_a_tenants_login_cannot_read_or_write_another_tenant(db: Access) -> None:
    async def main() -> dict[int, str]:
        users = {}
        async with _pool(db, max_size=4) as pool:
            for t in (1, 2, 3):
                with tenant(t):
                    async with pool.connection() as conn:
                        users[t] = await _one(conn, "SELECT session_user")
                        assert await _tenants(conn) == [t]
                        # The pool model's attack: set the tenant setting. The login ignores it.
                        other = 2 if t != 2 else 1
                        await conn.execute(
                            "SELECT set_config('app.tenant_id', %s, false)", (str(other),)
                        )
                        assert await _tenants(conn) == [t]
                        with pytest.raises(psycopg.errors.InsufficientPrivilege):
                            await conn.execute(
                                "INSERT INTO app.invoices (tenant_id, amount) VALUES (%s, 1)",
                                (other,),
                            )
                        cur = await conn.execute(
                            "UPDATE app.invoices SET note = 'x' WHERE tenant_id = %s", (other,)
                        )
                        assert cur.rowcount == 0
            with pytest.raises(NoTenantContext):
                async with pool.connection():
                    pass
        return users

    users = run(main)
    assert len(set(users.values())) == 3
    with db.superuser() as su:  # nothing of another tenant changed
        assert su.execute("SELECT count(*) FROM app.invoices WHERE note = 'x'").fetchone() == (0,)


def test_concurrent_tasks_keep_their_tenants(db: Access) -> None:
    # tenant() is a contextvar: each task leases with its own tenant, on its own login.
    async def main() -> list[list[int]]:
        async with _pool(db, max_size=3) as pool:

            async def worker(t: int) -> list[int]:
                seen: list[int] = []
                with tenant(t):
                    for _ in range(5):
                        async with pool.connection() as conn:
                            await asyncio.sleep(0)
                            seen.extend(await _tenants(conn))
                return seen

            return await asyncio.gather(*(worker(t) for t in (1, 2, 3)))

    assert run(main) == [[1] * 5, [2] * 5, [3] * 5]


# --------------------------------------------------------------------------- the pool


def test_cap_across_tenants_and_lru_eviction(db: Access) -> None:
    async def main() -> None:
        async with _pool(db, max_size=2, timeout=0.5) as pool:
            async with pool.connection(1), pool.connection(2):
                assert pool.stats()["open"] == 2
                with pytest.raises(PoolTimeout):
                    async with pool.connection(3):
                        pass
            assert pool.stats() == {"open": 2, "leased": 0, "idle": 2, "tenants": 2}
            # Tenant 3 takes the least recently used idle connection's place (tenant 1's).
            async with pool.connection(3) as conn:
                assert await _tenants(conn) == [3]
                assert pool.stats()["open"] == 2
            assert pool.stats() == {"open": 2, "leased": 0, "idle": 2, "tenants": 2}
            async with pool.connection(2) as conn:  # tenant 2's stayed
                assert await _tenants(conn) == [2]
                assert pool.stats()["open"] == 2

    run(main)


def test_waiter_gets_a_connection_when_one_is_returned(db: Access) -> None:
    async def main() -> None:
        async with _pool(db, max_size=1, timeout=5) as pool:
            got: list[list[int]] = []

            async def other() -> None:
                async with pool.connection(2) as conn:
                    got.append(await _tenants(conn))

            async with pool.connection(1):
                task = asyncio.create_task(other())
                await asyncio.sleep(0.3)
                assert not got  # waiting: the cap holds
            await task
            assert got == [[2]]
            assert pool.stats()["open"] == 1

    run(main)


def test_cancelled_waiter_and_cancelled_lease_give_their_place_back(db: Access) -> None:
    async def main() -> None:
        async with _pool(db, max_size=1, timeout=5) as pool:
            async with pool.connection(1):
                waiter = asyncio.create_task(pool.connection(2).__aenter__())
                await asyncio.sleep(0.1)
                waiter.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiter
            assert pool.stats() == {"open": 1, "leased": 0, "idle": 1, "tenants": 1}

            started = asyncio.Event()

            async def busy() -> None:
                async with pool.connection(3) as conn:
                    await conn.execute("BEGIN")
                    started.set()
                    await conn.execute("SELECT pg_sleep(30)")

            task = asyncio.create_task(busy())
            await asyncio.wait_for(started.wait(), 10)
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pool.stats()["leased"] == 0 and pool.stats()["open"] <= 1
            async with pool.connection(3) as conn:  # the one place is free again
                assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                assert await _tenants(conn) == [3]

    run(main)


def test_idle_connections_are_evicted(db: Access) -> None:
    async def main() -> None:
        async with _pool(db, max_size=3, max_idle=0.3) as pool:
            async with pool.connection(1) as conn:
                pass
            assert pool.stats()["idle"] == 1 and not conn.closed
            await asyncio.sleep(0.5)
            assert await pool.evict_idle() == 1
            assert conn.closed and pool.stats()["open"] == 0
            # A checkout also drops what went stale while idle.
            async with pool.connection(2) as conn2:
                pass
            await asyncio.sleep(0.5)
            async with pool.connection(2) as conn3:
                assert conn3 is not conn2 and conn2.closed
                assert pool.stats()["open"] == 1

    run(main)


def test_revoke_closes_that_tenants_connections(db: Access) -> None:
    async def main() -> None:
        async with _pool(db, slot="arev", max_size=4) as pool:
            async with pool.connection(2) as other:
                pass
            async with pool.connection(1) as idle_conn:
                user = str(await _one(idle_conn, "SELECT session_user"))
            async with pool.connection(1) as leased:
                assert leased is idle_conn
                async with pool.connection(1) as second:
                    assert second is not leased
                assert _sessions(db, user) == 2
                assert await pool.revoke(1) == 2  # one idle now, one leased on return
                assert second.closed and not leased.closed
            assert leased.closed
            assert not other.closed  # tenant 2's connection stays
            await asyncio.sleep(0.2)
            assert _sessions(db, user) == 0
            with db.admin() as admin:  # the source revoked the logins in the database too
                row = admin.execute(
                    "SELECT count(*) FROM pg_roles WHERE rolname = %s", (user,)
                ).fetchone()
            assert row == (0,)
            async with pool.connection(1) as conn:  # a new credential afterwards
                assert await _tenants(conn) == [1]

    run(main)


def test_connection_left_in_a_transaction_is_rolled_back(db: Access) -> None:
    async def main() -> None:
        async with _pool(db, max_size=1) as pool:
            async with pool.connection(3) as conn:
                await conn.execute("BEGIN")
                await conn.execute(
                    "UPDATE app.invoices SET note = 'uncommitted' WHERE tenant_id = 3"
                )
            async with pool.connection(3) as again:
                assert again is conn
                assert again.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                n = await _one(
                    again, "SELECT count(*) FROM app.invoices WHERE note = 'uncommitted'"
                )
                assert n == 0

    run(main)


def test_refusals(db: Access) -> None:
    with pytest.raises(UsageError, match="AsyncCredentialPool sets user and password"):
        _pool(db, kwargs={"password": "x"})
    with pytest.raises(UsageError):
        _pool(db, kwargs={"user": "x"})
    with pytest.raises(UsageError):
        _pool(db, max_size=0)

    async def main() -> None:
        pool = _pool(db)
        await pool.close()
        with pytest.raises(UsageError, match="AsyncCredentialPool is closed"):
            async with pool.connection(1):
                pass

    run(main)


# --------------------------------------------------------------------------- sources


def test_a_blocking_source_runs_off_the_event_loop_and_an_async_one_is_awaited(
    db: Access,
) -> None:
    admin = AdminCredentialSource(db.admin_dsn, ttl="15m", slot="asrc")
    threads: list[int] = []
    calls: list[str] = []

    class Blocking:
        def issue(self, t: str) -> Credential:
            threads.append(threading.get_ident())
            return admin.issue(t)

    class Async:
        async def issue(self, t: str) -> Credential:
            calls.append(f"issue {t}")
            return await asyncio.to_thread(admin.issue, t)

        async def revoke(self, t: str) -> None:
            calls.append(f"revoke {t}")
            await asyncio.to_thread(admin.revoke, t)

    async def main() -> int:
        async with AsyncCredentialPool(db.s.admin_dsn, source=Blocking()) as pool:
            async with pool.connection(1) as conn:
                assert await _tenants(conn) == [1]
        async with AsyncCredentialPool(db.s.admin_dsn, source=Async()) as pool:
            async with pool.connection(2) as conn:
                assert await _tenants(conn) == [2]
            async with pool.connection(2):  # the cached credential, the idle connection
                pass
            await pool.revoke(2)
        return threading.get_ident()

    loop_thread = run(main)
    assert threads and loop_thread not in threads
    assert calls == ["issue 2", "revoke 2"]


def test_one_issue_per_tenant_when_its_tasks_start_together(db: Access) -> None:
    # A second issue for the same login would change its password under the first
    # caller, whose login would then fail on the password server.
    admin = AdminCredentialSource(db.admin_dsn, ttl="15m", slot="burst")
    issued: list[str] = []

    class Counting:
        def issue(self, t: str) -> Credential:
            issued.append(t)
            time.sleep(0.2)  # a slow secrets service: the other tasks arrive meanwhile
            return admin.issue(t)

    async def main() -> list[list[int]]:
        async with AsyncCredentialPool(db.s.admin_dsn, source=Counting(), max_size=8) as pool:

            async def one(t: int) -> list[int]:
                async with pool.connection(t) as conn:
                    await asyncio.sleep(0.05)
                    return await _tenants(conn)

            return await asyncio.gather(*(one(t) for t in (1, 1, 1, 1, 2, 2, 2, 2)))

    assert run(main) == [[1]] * 4 + [[2]] * 4
    assert sorted(issued) == ["1", "2"]


def test_a_source_issuing_for_another_tenant_is_refused(suite: Access) -> None:
    admin = AdminCredentialSource(suite.admin_dsn, ttl="15m", slot="wrongt")

    class Wrong:
        def issue(self, t: str) -> Credential:
            return admin.issue("2")

    async def main() -> None:
        async with AsyncCredentialPool(suite.s.admin_dsn, source=Wrong()) as pool:
            with pytest.raises(UsageError, match="for tenant '2', not '1'"):
                async with pool.connection(1):
                    pass
            assert pool.stats()["open"] == 0  # the reserved place was given back

    run(main)


# --------------------------------------------------------------------------- passwords


def test_credential_near_its_end_is_renewed_with_a_real_password(pw: Access) -> None:
    # On the password server the renewed login works only with the new password.
    async def main() -> None:
        source = AdminCredentialSource(pw.admin_dsn, ttl=3, slot="renew")
        async with AsyncCredentialPool(pw.s.admin_dsn, source=source, renew_margin=2) as pool:
            async with pool.connection(1) as first:
                assert await _tenants(first) == [1]
            await asyncio.sleep(1.2)  # now within renew_margin of the end
            async with pool.connection(1) as second:
                assert second is not first and first.closed
                assert await _tenants(second) == [1]

    run(main)


def test_nothing_logs_a_password(pw: Access, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pw.admin() as admin:
        cred = issue_credential(admin, 1, ttl="15m", slot="alog")

    class Stale:
        async def issue(self, t: str) -> Credential:
            return replace(cred, password=cred.password[::-1])  # refused by the server

    async def main() -> str:
        async with AsyncCredentialPool(pw.s.admin_dsn, source=Stale()) as pool:
            with pytest.raises(ConnectionFailed) as info:
                async with pool.connection(1):
                    pass
            assert pool.stats()["open"] == 0
        async with _pool(pw, slot="alog2") as pool:  # a real issue, logged in, revoked
            async with pool.connection(2) as conn:
                assert await _tenants(conn) == [2]
            await pool.revoke(2)
        return str(info.value)

    message = run(main)
    assert "password authentication failed" in message and cred.user in message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "issued credential" in logged and "revoked tenant 2" in logged
    assert cred.password not in message + logged
    assert cred.password[::-1] not in message + logged
    for record in caplog.records:  # nor in a record's arguments
        assert cred.password not in repr(record.args)


def test_a_revoked_login_cannot_log_in_again(pw: Access) -> None:
    async def main() -> Credential:
        source = AdminCredentialSource(pw.admin_dsn, ttl="15m", slot="again")
        seen: list[Credential] = []

        class Keep:
            def issue(self, t: str) -> Credential:
                seen.append(source.issue(t))
                return seen[-1]

            def revoke(self, t: str) -> None:
                source.revoke(t)

        async with AsyncCredentialPool(pw.s.admin_dsn, source=Keep()) as pool:
            async with pool.connection(3) as conn:
                assert await _tenants(conn) == [3]
            await pool.revoke(3)
        return seen[0]

    old = run(main)
    with pytest.raises(psycopg.OperationalError):
        pw.connect(old.user, old.password)
