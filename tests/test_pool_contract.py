"""The pools' contract with their caller: bad arguments get tenantguard errors with a hint.

A malformed DSN, sizes psycopg_pool refuses, a tenant id of the wrong kind: each is
refused before any I/O with an error that says what to pass instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from tenantguard import AsyncTenantPool, InvalidTenantId, TenantPool, tenant
from tenantguard.errors import ConnectionFailed, UsageError


def _sync(conninfo: str = "", **kw: Any) -> TenantPool:
    return TenantPool(conninfo, open=False, **kw)


def _async(conninfo: str = "", **kw: Any) -> AsyncTenantPool:
    return AsyncTenantPool(conninfo, **kw)


POOLS = [pytest.param(_sync, id="TenantPool"), pytest.param(_async, id="AsyncTenantPool")]


# -- the DSN -------------------------------------------------------------------------


@pytest.mark.parametrize("make", POOLS)
def test_an_unparsable_dsn_is_a_usage_error_with_a_hint(make: Any) -> None:
    with pytest.raises(psycopg.ProgrammingError):  # what the caller got before
        psycopg.conninfo.conninfo_to_dict("nonsense_option=1")
    with pytest.raises(UsageError, match="invalid DSN") as info:
        make("nonsense_option=1")
    assert not isinstance(info.value, psycopg.Error)
    assert info.value.hint and "postgresql://" in info.value.hint


def test_an_unknown_connection_option_is_a_usage_error(server_dsn: str) -> None:
    with pytest.raises(psycopg.ProgrammingError):  # psycopg's own error for it
        psycopg.connect(server_dsn, nonsense_option="1")
    with pytest.raises(UsageError, match="nonsense_option") as info:
        TenantPool(server_dsn, kwargs={"nonsense_option": "1"})
    assert info.value.hint

    async def main() -> None:
        with pytest.raises(UsageError, match="nonsense_option"):
            await AsyncTenantPool(server_dsn, kwargs={"nonsense_option": "1"}).open()

    asyncio.run(main())


def test_an_unreachable_server_is_connection_failed_without_the_password() -> None:
    dsn = "postgresql://app:s3cret@127.0.0.1:1/db?connect_timeout=2"
    with pytest.raises(ConnectionFailed) as info:
        TenantPool(dsn)
    assert "127.0.0.1" in str(info.value) and "s3cret" not in str(info.value)


# -- sizing: psycopg_pool's rules, exactly -------------------------------------------

SIZES: list[dict[str, int]] = [
    {},
    {"max_size": 3},
    {"max_size": 4},
    {"max_size": 10},
    {"min_size": 2},
    {"min_size": 3, "max_size": 3},
    {"min_size": 5, "max_size": 3},
    {"min_size": 0},
    {"min_size": 0, "max_size": 0},
    {"min_size": 0, "max_size": 2},
    {"min_size": -1},
    {"min_size": -1, "max_size": 2},
]


def _psycopg_pool_sizes(cls: Any, kw: dict[str, int]) -> tuple[int, int] | None:
    try:
        pool = cls("", open=False, **kw)
    except ValueError:
        return None
    return pool.min_size, pool.max_size


@pytest.mark.parametrize("kw", SIZES, ids=str)
def test_sizes_follow_psycopg_pool(kw: dict[str, int]) -> None:
    for make, raw_cls in ((_sync, ConnectionPool), (_async, AsyncConnectionPool)):
        expected = _psycopg_pool_sizes(raw_cls, kw)
        if expected is None:
            with pytest.raises(UsageError) as info:
                make(**kw)
            assert info.value.hint and "size" in info.value.hint
        else:
            pool = make(**kw)
            assert (pool.pool.min_size, pool.pool.max_size) == expected


def test_max_size_alone_below_the_default_min_size_says_what_to_pass() -> None:
    with pytest.raises(UsageError, match=r"max_size=3 is smaller than min_size=4 \(the default\)"):
        _async(max_size=3)
    with pytest.raises(UsageError) as info:
        _sync(max_size=3)
    assert info.value.hint is not None and "min_size=3, max_size=3" in info.value.hint


def test_the_sizes_the_hint_names_work_on_a_real_server(saas: Any) -> None:
    async def main() -> None:
        async with AsyncTenantPool(saas.app_dsn, min_size=3, max_size=3) as pool:
            assert (pool.pool.min_size, pool.pool.max_size) == (3, 3)
            with tenant(1):
                async with pool.connection() as conn:
                    cur = await conn.execute("SELECT count(*) FROM app.invoices")
                    assert await cur.fetchone() == (2,)

    asyncio.run(main())


# -- tenant ids: hints name the pool's tenant kind -----------------------------------


def _enter(pool: TenantPool | AsyncTenantPool, tenant_id: object) -> None:
    """Enter a lease with ``tenant_id=`` (refused before any I/O, so no server is needed)."""
    if isinstance(pool, TenantPool):
        pool.connection(tenant_id=tenant_id).__enter__()
    else:
        asyncio.run(pool.connection(tenant_id=tenant_id).__aenter__())


@pytest.mark.parametrize("value", [True, 1.5, "abc", ""])
@pytest.mark.parametrize("kind", ["int", "bigint", "uuid"])
def test_a_bad_tenant_id_hint_names_the_pools_kind(kind: Any, value: object) -> None:
    for pool in (_sync(tenant_kind=kind), _async(tenant_kind=kind)):
        with pytest.raises(InvalidTenantId) as info:
            _enter(pool, value)
        assert info.value.hint == f"pass a valid {kind} tenant id", info.value


def test_a_bad_tenant_id_bound_before_the_pool_names_the_pools_kind() -> None:
    pool = _sync(tenant_kind="bigint")
    with tenant("abc"), pytest.raises(InvalidTenantId) as info:
        _enter(pool, None)
    assert info.value.hint == "pass a valid bigint tenant id"


@pytest.mark.parametrize("value", [True, 1.5, b"1", None])
def test_without_a_kind_the_hint_names_every_kind(value: object) -> None:
    # tenant() alone cannot know which kind the caller's pool wants: it must not say "text"
    with pytest.raises(InvalidTenantId) as info:
        tenant(value)
    assert info.value.hint == "pass an int, a UUID or a text id"


def test_a_text_pool_still_says_text() -> None:
    with pytest.raises(InvalidTenantId) as info:
        _enter(_sync(tenant_kind="text"), 1.5)
    assert info.value.hint == "pass a valid text tenant id"


def test_a_pool_without_the_fast_path_warns_once(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """Without the fast path, a pool says what that costs (client CPU; not behind PgBouncer)."""
    from tenantguard.drivers.psycopg import _internals, _pool_base

    monkeypatch.setattr(_internals, "FAST", False)
    monkeypatch.setattr(_internals, "REASON", "TENANTGUARD_FAST_PATH=0")
    monkeypatch.setattr(_pool_base, "_warned_public_path", False)
    with caplog.at_level("WARNING", logger="tenantguard.guard"):
        TenantPool("dbname=unused", open=False)
        TenantPool("dbname=unused", open=False)
    warnings = [r for r in caplog.records if "public API" in r.getMessage()]
    assert len(warnings) == 1
    assert "TENANTGUARD_FAST_PATH=0" in warnings[0].getMessage()
    assert "PgBouncer" in warnings[0].getMessage()


def test_control_a_pool_with_the_fast_path_does_not_warn(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.drivers.psycopg import _internals, _pool_base

    monkeypatch.setattr(_internals, "FAST", True)
    monkeypatch.setattr(_pool_base, "_warned_public_path", False)
    with caplog.at_level("WARNING", logger="tenantguard.guard"):
        TenantPool("dbname=unused", open=False)
    assert not [r for r in caplog.records if "public API" in r.getMessage()]


def test_the_twins_take_the_same_arguments() -> None:
    """The sync pool is generated from the async one (tools/async_to_sync.py)."""
    import inspect

    sync = inspect.signature(TenantPool.__init__).parameters
    asyn = inspect.signature(AsyncTenantPool.__init__).parameters
    assert list(sync) == list(asyn)
    assert [p.default for p in sync.values()] == [p.default for p in asyn.values()]


def test_an_async_pool_cannot_open_in_its_constructor() -> None:
    from tenantguard.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="cannot open in its constructor") as err:
        AsyncTenantPool("dbname=unused", open=True)
    assert "await pool.open()" in str(err.value)
    assert AsyncTenantPool("dbname=unused").pool.closed  # the default: not opened
