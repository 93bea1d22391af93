"""The checkin guard's decisions, without a database (the logic is sans-IO)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from tenantguard.core.context import TenantContext
from tenantguard.core.guard import SessionSnapshot
from tenantguard.core.ids import parse_tenant_id
from tenantguard.drivers.psycopg._connection_base import note_attributes
from tenantguard.drivers.psycopg._pool_base import PoolCore

# What every server reports for the lexer (the pool refuses connections without these).
LEXER = {b"standard_conforming_strings": b"on", b"client_encoding": b"UTF8"}
CLEAN = SessionSnapshot("app", "app", '"$user", public', False, False, False, False, False, "", "")


def core(**kw: Any) -> PoolCore:
    opts: dict[str, Any] = dict(
        tenant_kind=None,
        binder=None,
        setting="app.tenant_id",
        user_setting="app.user_id",
        tenant_column="tenant_id",
        check_role=True,
        verify="suspect",
        on_contamination="reset",
    )
    opts.update(kw)
    return PoolCore(**opts)


def fake_conn(c: PoolCore, effects: set[str]) -> Any:
    st = c.new_state()
    pg = SimpleNamespace(parameter_status=LEXER.get, status=0)
    conn = SimpleNamespace(_tg_state=st, closed=False, pgconn=pg, _tg_binding_prepared=True)
    c.set_baseline(conn, st, as_row(CLEAN))
    st.start_lease(TenantContext(parse_tenant_id(7)))
    st.effects |= effects
    return conn


def drive(
    c: PoolCore, conn: Any, rows: list[tuple[Any, ...]], fail_on: str | None = None
) -> list[str]:
    """Run the steps against canned rows; return the step kinds seen."""
    seen: list[str] = []
    steps = c.checkin_steps(conn)
    try:
        step = next(steps)
        while True:
            kind, query, _ = step
            seen.append(kind if kind != "exec" else query)
            if fail_on and (query or "").startswith(fail_on):
                step = steps.throw(RuntimeError("server went away"))
                continue
            step = steps.send(rows.pop(0) if kind == "fetch" else None)
    except StopIteration:
        pass
    return seen


def as_row(s: SessionSnapshot) -> tuple[Any, ...]:
    return tuple(getattr(s, f) for f in SessionSnapshot.__slots__)


def test_clean_path_does_no_io() -> None:
    c = core()
    conn = fake_conn(c, set())
    assert drive(c, conn, []) == []
    assert c.guard_stats.checkins == 1 and c.guard_stats.verified == 0
    assert conn._tg_state.lease is None  # the lease always ends


def test_suspect_connection_is_reset_and_verified() -> None:
    c = core()
    conn = fake_conn(c, {"listen"})
    dirty = (*as_row(CLEAN)[:4], True, *as_row(CLEAN)[5:])
    assert drive(c, conn, [dirty, as_row(CLEAN)]) == ["fetch", "DISCARD ALL", "fetch"]
    assert c.guard_stats.resets == 1 and c.guard_stats.by_tenant == {"7": 1}
    assert conn._tg_binding_prepared is False


def test_state_that_survives_discard_closes_the_connection() -> None:
    c = core()
    conn = fake_conn(c, {"search_path"})
    dirty = (*as_row(CLEAN)[:2], "evil", *as_row(CLEAN)[3:])
    assert drive(c, conn, [dirty, dirty]) == ["fetch", "DISCARD ALL", "fetch", "close"]
    assert c.guard_stats.by_kind["unresettable"] == 1


@pytest.mark.parametrize("fail_on", ["DISCARD", "\nSELECT"])
def test_io_errors_during_the_guard_close_the_connection(fail_on: str) -> None:
    c = core()
    conn = fake_conn(c, {"opaque_code"})
    seen = drive(c, conn, [as_row(CLEAN), as_row(CLEAN)], fail_on=fail_on)
    assert seen[-1] == "close"


def test_discard_mode_closes_without_reset() -> None:
    c = core(on_contamination="discard")
    conn = fake_conn(c, {"setting:app.x"})
    assert drive(c, conn, [as_row(CLEAN)]) == ["fetch", "close"]
    assert c.guard_stats.discards == 1


def test_verify_always_checks_clean_connections_too() -> None:
    c = core(verify="always")
    conn = fake_conn(c, set())
    assert drive(c, conn, [as_row(CLEAN)]) == ["fetch"]
    assert c.guard_stats.verified == 1 and c.guard_stats.contaminated == 0


@pytest.mark.parametrize(
    ("effects", "verify", "reported"),
    [
        (set(), "suspect", None),
        ({"search_path"}, "suspect", None),
        (set(), "always", None),
        (set(), "suspect", b"pg_catalog"),
    ],
)
def test_clean_fast_path_takes_the_same_decision(
    effects: set[str], verify: str, reported: bytes | None
) -> None:
    c = core(verify=verify)
    conn = fake_conn(c, effects)
    conn.pgconn = SimpleNamespace(
        parameter_status=lambda name: reported if name == b"search_path" else LEXER.get(name),
        status=0,
    )
    st = conn._tg_state
    lease = st.lease
    done = c.checkin_clean(conn)
    clean = not effects and verify == "suspect" and reported is None
    assert done is clean
    if done:  # lease ended and counted, exactly as checkin_steps would
        assert st.lease is None and c.guard_stats.checkins == 1 and c.guard_stats.verified == 0
    else:  # untouched: the generator takes over
        assert st.lease is lease and c.guard_stats.checkins == 0
        assert drive(c, conn, [as_row(CLEAN)] * 2) != [] and st.lease is None


def reporting_conn(c: PoolCore, reported: dict[bytes, bytes]) -> Any:
    """A connection whose server reports *reported* (ParameterStatus), baseline CLEAN."""
    st = c.new_state()
    pg = SimpleNamespace(parameter_status=lambda name: {**LEXER, **reported}.get(name), status=0)
    conn = SimpleNamespace(_tg_state=st, closed=False, pgconn=pg, _tg_binding_prepared=True)
    c.set_baseline(conn, st, as_row(CLEAN))
    st.start_lease(TenantContext(parse_tenant_id(7)))
    return conn


def test_clean_path_compares_what_the_server_reports_with_the_baseline() -> None:
    c = core()
    reported = {b"search_path": b'"$user", public', b"session_authorization": b"app"}
    conn = reporting_conn(c, reported)
    assert c.checkin_clean(conn)  # same bytes as at the baseline: no I/O
    conn._tg_state.start_lease(TenantContext(parse_tenant_id(7)))
    reported[b"search_path"] = b"evil, public"  # the server reported a change
    assert not c.checkin_clean(conn)
    assert c.client_side_kinds(conn) == {"search_path"}
    reported[b"search_path"] = b'"$user", public'
    reported[b"session_authorization"] = b"postgres"
    assert not c.checkin_clean(conn) and c.client_side_kinds(conn) == {"role"}


def test_a_report_that_disagrees_with_the_baseline_means_always_verify() -> None:
    c = core()
    conn = reporting_conn(c, {b"search_path": b"something, else"})
    assert conn._tg_state.baseline_reported is None
    assert not c.checkin_clean(conn)  # never the clean path: checkin_steps verifies


def test_servers_that_report_nothing_take_the_clean_path() -> None:
    c = core()
    conn = reporting_conn(c, {})  # PostgreSQL before 18 does not report search_path
    assert conn._tg_state.baseline_reported[:2] == (None, None) and c.checkin_clean(conn)


def test_close_returns_is_refused() -> None:
    """With it, the guard's conn.close() would put a dirty connection back in the pool."""
    from tenantguard.drivers.psycopg import AsyncTenantPool, TenantPool
    from tenantguard.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="close_returns"):
        TenantPool("", close_returns=True, open=False)
    with pytest.raises(ConfigurationError, match="close_returns"):
        AsyncTenantPool("", close_returns=True)


class _RefusingPool:
    """A psycopg_pool stand-in whose putconn raises (as it does for a foreign connection)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def getconn(self, timeout: float | None = None) -> Any:
        return self.conn

    def putconn(self, conn: Any) -> None:
        raise ValueError("can't return connection to pool")


class _AsyncRefusingPool(_RefusingPool):
    async def getconn(self, timeout: float | None = None) -> Any:  # type: ignore[override]
        return self.conn

    async def putconn(self, conn: Any) -> None:  # type: ignore[override]
        raise ValueError("can't return connection to pool")


def _lease_conn(c: PoolCore) -> Any:
    # OK, IDLE, pipeline OFF: all 0
    pg = SimpleNamespace(
        parameter_status=LEXER.get, status=0, transaction_status=0, pipeline_status=0
    )
    conn = SimpleNamespace(
        _tg_state=c.new_state(),
        _tg_client_changed=False,
        _tg_notice=(),
        _tg_notify=(),
        lock=threading.Lock(),
        closed=False,
        pgconn=pg,
        autocommit=True,
    )
    note_attributes(conn)
    conn._tg_adapters = None  # (adapters_tables of a fake: None)
    return conn


def test_the_tenant_id_scope_ends_even_when_putconn_raises() -> None:
    import asyncio

    from tenantguard.core.context import current_tenant
    from tenantguard.drivers.psycopg._pool import _Lease
    from tenantguard.drivers.psycopg._pool_async import _AsyncLease

    c = core()
    conn = _lease_conn(c)
    pool = SimpleNamespace(_core=c, _pool=_RefusingPool(conn), _checkin=lambda conn: None)
    with pytest.raises(ValueError), _Lease(pool, None, 5):  # type: ignore[arg-type]
        assert current_tenant() == TenantContext(parse_tenant_id(5))
    assert current_tenant() is None

    async def checkin(conn: Any) -> None:
        pass

    async def main() -> None:
        apool = SimpleNamespace(_core=c, _pool=_AsyncRefusingPool(conn), _checkin=checkin)
        with pytest.raises(ValueError):
            async with _AsyncLease(apool, None, 6):  # type: ignore[arg-type]
                assert current_tenant() == TenantContext(parse_tenant_id(6))
        assert current_tenant() is None

    asyncio.run(main())
