"""The lean request path keeps every guarantee of the general one (untimed)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tenantguard import InvalidTenantId, NoTenantContext, TenantContext, TenantPool, tenant
from tenantguard.core.context import current_tenant
from tenantguard.drivers.psycopg import fast_path

# What only the fast path does (cursor reuse, the prepared binding): checked where it is on;
# the pass with TENANTGUARD_FAST_PATH=0 runs the rest of this module on the public API.
FAST_ONLY = pytest.mark.skipif(
    not fast_path()[0], reason=f"tests the fast path, which is off: {fast_path()[1]}"
)


@pytest.fixture(scope="module")
def pool(saas):  # type: ignore[no-untyped-def]
    with TenantPool(
        saas.app_dsn, min_size=1, max_size=1, tenant_kind="bigint", session_state="reset"
    ) as p:
        yield p


def count(conn) -> int:  # type: ignore[no-untyped-def]
    return int(conn.execute("SELECT count(*) FROM app.invoices").fetchone()[0])


def test_tenant_scope_validates_on_call_and_nests() -> None:
    with pytest.raises(InvalidTenantId):
        tenant("")
    assert current_tenant() is None
    with tenant(1) as outer:
        with tenant(2, user="bob") as inner:
            assert current_tenant() is inner and inner.user == "bob"
        assert current_tenant() is outer
    assert current_tenant() is None


def test_tenant_scope_as_decorator_and_single_use() -> None:
    @tenant(7)
    def who() -> object:
        ctx = current_tenant()
        return ctx.tenant.value if ctx else None

    assert who() == 7 and who() == 7 and current_tenant() is None
    scope = tenant(3)
    with scope:
        with pytest.raises(RuntimeError, match="already active"), scope:
            pass
    assert current_tenant() is None
    with scope:  # reusable once it has exited
        assert current_tenant() is not None


def test_composed_statement_changing_session_state_is_caught(pool) -> None:  # type: ignore[no-untyped-def]
    # The fast path classifies the converted SQL (what the server runs), so a
    # psycopg.sql.Composed statement is seen like a string one.
    stmt = sql.SQL("SET search_path = {}").format(sql.Identifier("pg_catalog"))
    before = pool.guard_stats.resets
    with tenant(1), pool.connection() as conn:
        conn.execute(stmt)
        assert "search_path" in conn._tg_state.effects
    with tenant(2), pool.connection() as conn:
        path = conn.execute("SELECT current_setting('search_path')").fetchone()[0]
        assert path == '"$user", public'
        assert count(conn) == 4
    assert pool.guard_stats.resets == before + 1


def test_parametrized_session_set_config_is_caught(pool) -> None:  # type: ignore[no-untyped-def]
    before = pool.guard_stats.resets
    with tenant(1), pool.connection() as conn:
        # $3 may be false: flagged, whatever value it has at run time
        conn.execute("SELECT set_config('app.flag', %s, %s)", ("x", False))
    with tenant(2), pool.connection() as conn:
        assert conn.execute("SELECT current_setting('app.flag', true)").fetchone()[0] in ("", None)
    assert pool.guard_stats.resets == before + 1


def test_fail_closed_on_the_fast_path(pool) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.core.context import _current

    with tenant(1), pool.connection() as conn:
        assert count(conn) == 2  # binding cached for this lease
        token = _current.set(None)
        try:
            with pytest.raises(NoTenantContext):
                conn.execute("SELECT 1")
        finally:
            _current.reset(token)
        assert count(conn) == 2


class CountingBinder:
    """A binder that does not declare itself stable: asked again for every statement."""

    def __init__(self) -> None:
        self.calls = 0

    def bind_query(self, ctx: TenantContext):  # type: ignore[no-untyped-def]
        self.calls += 1
        return (
            "SELECT set_config('app.tenant_id', %s, true), set_config('app.user_id', %s, true)",
            (str(ctx.tenant), ctx.user or ""),
        )


class StableCountingBinder(CountingBinder):
    """The same, declared stable: its statement depends on the context only."""

    stable = True


@FAST_ONLY
def test_binding_computed_once_per_tenant_and_user_for_the_pool(saas) -> None:  # type: ignore[no-untyped-def]
    binder = StableCountingBinder()
    with TenantPool(saas.app_dsn, min_size=2, max_size=2, binder=binder) as p:
        for _ in range(3):
            with tenant(3), p.connection() as conn:
                assert count(conn) == 6 and count(conn) == 6
        assert binder.calls == 1  # shared by leases and connections
        with tenant(3, user="u1"), p.connection() as conn:
            assert count(conn) == 6
        with tenant(2), p.connection() as conn:
            assert count(conn) == 4  # never another tenant's binding
        assert binder.calls == 3
        st = conn._tg_state
        assert st.binds[(3, int, "bigint", None)][1] == [b"3", b""]
        assert st.binds[(3, int, "bigint", "u1")][1] == [b"3", b"u1"]


def test_binding_cache_is_bounded(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.core import session

    monkeypatch.setattr(session, "BIND_CACHE_SIZE", 2)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as p:
        for tid in (1, 2, 3, 1, 2, 3):
            with tenant(tid), p.connection() as conn:
                assert count(conn) == 2 * tid
                assert len(conn._tg_state.binds) <= 2


def test_unstable_binder_is_asked_per_statement(saas) -> None:  # type: ignore[no-untyped-def]
    binder = CountingBinder()
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, binder=binder) as p:
        with tenant(2), p.connection() as conn:
            assert count(conn) == 4 and count(conn) == 4
    assert binder.calls == 2


def test_async_lease_class_keeps_the_semantics(saas) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from tenantguard import AsyncTenantPool

    async def main() -> None:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as p:
            with pytest.raises(NoTenantContext):
                async with p.connection():
                    pass
            with pytest.raises(ZeroDivisionError):
                async with p.connection(tenant_id=1) as conn:
                    await conn.execute("BEGIN")
                    raise ZeroDivisionError
            assert current_tenant() is None  # tenant_id= scope ended with the lease
            async with p.connection(tenant_id=1) as conn:
                assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
                cur = await conn.execute("SELECT count(*) FROM app.invoices")
                assert (await cur.fetchone())[0] == 2
            assert p.guard_stats.contaminated == 0  # rolled back on the error: clean

    asyncio.run(main())


def test_ids_equal_in_python_but_bound_differently_never_share_a_binding(pool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # TenantId(True, "bigint") == TenantId(1, "bigint") in Python, but it binds "True".
    # tenant() refuses such an id (built directly, never checked); were one to get past it,
    # it must still never be handed tenant 1's cached binding.
    from tenantguard import TenantId
    from tenantguard.core import context, ids

    with tenant(1), pool.connection() as conn:
        assert count(conn) == 2  # tenant 1's binding is in the pool's cache
    for odd in (True, 1.0, "01"):
        with pytest.raises(InvalidTenantId):
            tenant(TenantId(odd, "bigint"))  # type: ignore[arg-type]
    real = ids.parse_tenant_id
    monkeypatch.setattr(
        context, "parse_tenant_id", lambda v, k=None: v if isinstance(v, TenantId) else real(v, k)
    )
    for odd in (True, 1.0):
        with tenant(TenantId(odd, "bigint")), pool.connection() as conn:  # type: ignore[arg-type]
            try:
                seen: int | None = count(conn)
            except psycopg.Error:
                seen = None
            assert seen != 2
            assert conn._tg_state.autocommit_bind()[1][1] == str(odd).encode()


def test_int_tenant_contexts_are_validated_once_and_shared(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.core import context

    with tenant(41) as a, tenant(41) as b:
        assert a is b and a.tenant.kind == "bigint" and a.user is None
    with tenant(41, user="u") as c:
        assert c is not a and c.user == "u"
    for bad in (True, 2**63, -(2**63) - 1):
        with pytest.raises(InvalidTenantId):
            tenant(bad)
    assert 2**63 not in context._INT_CONTEXTS  # a refused id is never cached
    monkeypatch.setattr(context, "_INT_CONTEXTS_SIZE", 3)
    for tid in range(100, 110):
        with tenant(tid) as ctx:
            assert ctx.tenant.value == tid
        assert len(context._INT_CONTEXTS) <= 3
