"""1,000 interleaved requests across tenants on a pool of 2: zero cross-over."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from tenantguard import AsyncTenantPool, TenantPool, tenant

EXPECTED = {1: 2, 2: 4, 3: 6}
N = 1000


def _check(rows: list[tuple[int, int]], tid: int) -> None:
    assert len(rows) == EXPECTED[tid], (tid, rows)
    assert all(r[0] == tid for r in rows), (tid, rows)


def test_threads_interleaving_tenants(saas) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(7)
    plan = [rnd.choice((1, 2, 3)) for _ in range(N)]
    with TenantPool(saas.app_dsn, min_size=2, max_size=2, tenant_kind="bigint") as pool:

        def request(tid: int) -> int:
            with tenant(tid), pool.connection() as conn:
                if tid == 3:  # some requests use explicit transactions
                    with conn.transaction():
                        rows = conn.execute("SELECT tenant_id, id FROM app.invoices").fetchall()
                else:
                    rows = conn.execute("SELECT tenant_id, id FROM app.invoices").fetchall()
                _check(rows, tid)
                return tid

        with ThreadPoolExecutor(max_workers=8) as ex:
            done = list(ex.map(request, plan))
        assert done == plan
        assert pool.guard_stats.checkins == N and pool.guard_stats.contaminated == 0


def test_asyncio_tasks_interleaving_tenants(saas) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(11)
    plan = [rnd.choice((1, 2, 3)) for _ in range(N)]

    async def main() -> list[int]:
        async with AsyncTenantPool(saas.app_dsn, min_size=2, max_size=2) as pool:

            async def request(tid: int) -> int:
                with tenant(tid):  # each task has its own copy of the context
                    await asyncio.sleep(0)
                    async with pool.connection() as conn:
                        cur = await conn.execute("SELECT tenant_id, id FROM app.invoices")
                        await asyncio.sleep(0)  # yield mid-request
                        _check(await cur.fetchall(), tid)
                return tid

            out = await asyncio.gather(*(request(t) for t in plan))
            assert pool.guard_stats.contaminated == 0
            return list(out)

    assert asyncio.run(main()) == plan


def test_async_pool_binding_and_errors(saas) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    from tenantguard import NoTenantContext

    async def main() -> None:
        async with AsyncTenantPool(
            saas.app_dsn, min_size=1, max_size=1, session_state="reset"
        ) as pool:
            with pytest.raises(NoTenantContext):
                async with pool.connection():
                    pass
            async with pool.connection(tenant_id=2) as conn:
                async with conn.transaction():
                    cur = await conn.execute("SELECT count(*) FROM app.invoices")
                    assert (await cur.fetchone())[0] == 4
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await conn.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (1, 1)")
            async with pool.connection(tenant_id=1) as conn:
                await conn.execute("SET search_path = pg_catalog")
            async with pool.connection(tenant_id=3) as conn:
                cur = await conn.execute("SELECT current_setting('search_path')")
                assert (await cur.fetchone())[0] == '"$user", public'
            assert pool.guard_stats.by_tenant == {"1": 1}

    asyncio.run(main())
