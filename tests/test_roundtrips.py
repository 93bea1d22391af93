"""Round trips, counted by a forwarding proxy: the binding costs none of its own."""

from __future__ import annotations

import psycopg
import pytest

from tenantguard import TenantPool, tenant
from tenantguard.testing.rtproxy import RoundTripProxy


def upstream_of(dsn: str) -> str | tuple[str, int]:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    host = str(params.get("host") or "/var/run/postgresql")
    port = int(params.get("port") or 5432)
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


@pytest.fixture(scope="module")
def proxy(saas):  # type: ignore[no-untyped-def]
    with RoundTripProxy(upstream_of(saas.app_dsn)) as p:
        yield p


@pytest.fixture(scope="module")
def proxied_dsn(saas, proxy) -> str:  # type: ignore[no-untyped-def]
    params = psycopg.conninfo.conninfo_to_dict(saas.app_dsn)
    params.update(proxy.conninfo())
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def measure(proxy: RoundTripProxy, fn) -> int:  # type: ignore[no-untyped-def]
    proxy.settle()  # what earlier requests sent (e.g. Terminate) and its answers went through
    proxy.reset()
    fn()
    return proxy.round_trips


def test_single_statement_is_one_round_trip(proxy, proxied_dsn) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(proxied_dsn, min_size=1, max_size=1) as pool:
        for n in range(8):  # before and after psycopg starts preparing (threshold 5)

            def request(t: int = 1 + n % 3) -> None:
                with tenant(t), pool.connection() as conn:
                    rows = conn.execute("SELECT tenant_id FROM app.invoices").fetchall()
                    assert {r[0] for r in rows} == {t}

            assert measure(proxy, request) == 1


def test_binding_rides_with_begin_in_explicit_transactions(proxy, proxied_dsn) -> None:  # type: ignore[no-untyped-def]
    def plain() -> None:
        with psycopg.connect(proxied_dsn, autocommit=True) as conn:
            proxy.settle()
            proxy.reset()
            with conn.transaction():
                conn.execute("SELECT 1")
                conn.execute("SELECT 2")
            plain_rt.append(proxy.round_trips)

    plain_rt: list[int] = []
    plain()
    with TenantPool(proxied_dsn, min_size=1, max_size=1) as pool:

        def guarded() -> None:
            with tenant(2), pool.connection() as conn, conn.transaction():
                assert conn.execute("SELECT count(*) FROM app.invoices").fetchone()[0] == 4
                conn.execute("SELECT 2")

        assert measure(proxy, guarded) == plain_rt[0] == 4  # BEGIN, stmt, stmt, COMMIT


def test_naive_pattern_costs_four(proxy, proxied_dsn) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(proxied_dsn, autocommit=True) as conn:

        def naive() -> None:
            with conn.transaction():
                conn.execute("SELECT set_config('app.tenant_id', '1', true)")
                conn.execute("SELECT count(*) FROM app.invoices")

        assert measure(proxy, naive) == 4
