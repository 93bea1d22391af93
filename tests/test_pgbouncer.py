"""Through a real PgBouncer in transaction mode (started on a free loopback port).

These tests need the pgbouncer binary; CI installs it and they must not skip there.
"""

from __future__ import annotations

import os
import random
import threading

import psycopg
import pytest

from tenantguard import TenantPool, tenant
from tenantguard.bench.pgbouncer import PgBouncer, find_pgbouncer

pytestmark = pytest.mark.pgbouncer

if find_pgbouncer() is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must install pgbouncer (apt-get install -y pgbouncer)")
    pytest.skip("pgbouncer is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def bouncer(saas):  # type: ignore[no-untyped-def]
    params = psycopg.conninfo.conninfo_to_dict(saas.admin_dsn)
    host = str(params.get("host") or "127.0.0.1")
    port = int(params.get("port") or 5432)
    # One server connection: every client shares it, so any leak would show.
    with PgBouncer(host, port, users=[saas.app_role, "postgres"], pool_size=1) as pgb:
        yield pgb


def via(bouncer, saas, user: str) -> str:  # type: ignore[no-untyped-def]
    params = psycopg.conninfo.conninfo_to_dict(saas.admin_dsn)
    params.update(bouncer.conninfo(user=user))
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


NO_PREPARE = {"prepare_threshold": None}  # PgBouncer < 1.21 in transaction mode


def test_two_clients_interleaving_tenants_never_cross(bouncer, saas) -> None:  # type: ignore[no-untyped-def]
    dsn = via(bouncer, saas, saas.app_role)
    expected = {1: 2, 2: 4, 3: 6}
    errors: list[str] = []
    with (
        TenantPool(dsn, min_size=1, max_size=2, kwargs=NO_PREPARE) as a,
        TenantPool(dsn, min_size=1, max_size=2, kwargs=NO_PREPARE) as b,
    ):

        def client(pool: TenantPool, seed: int) -> None:
            rnd = random.Random(seed)
            for _ in range(150):
                tid = rnd.choice((1, 2, 3))
                with tenant(tid), pool.connection() as conn:
                    if rnd.random() < 0.3:
                        with conn.transaction():
                            rows = conn.execute("SELECT tenant_id FROM app.invoices").fetchall()
                    else:
                        rows = conn.execute("SELECT tenant_id FROM app.invoices").fetchall()
                if len(rows) != expected[tid] or any(r[0] != tid for r in rows):
                    errors.append(f"tenant {tid} saw {rows}")

        threads = [threading.Thread(target=client, args=(p, i)) for i, p in enumerate((a, b, a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert errors == []


def test_session_set_through_pgbouncer_does_not_reach_tenantguard(bouncer, saas) -> None:  # type: ignore[no-untyped-def]
    dsn = via(bouncer, saas, saas.app_role)
    # Another client (not using tenantguard) sets the tenant on the *session*: with
    # transaction pooling it lands on the one shared server connection.
    with psycopg.connect(dsn, autocommit=True, **NO_PREPARE) as careless:
        careless.execute("SET app.tenant_id = '1'")
    # Control: a plain client without tenantguard now silently runs as tenant 1.
    with psycopg.connect(dsn, autocommit=True, **NO_PREPARE) as plain:
        leaked = plain.execute("SELECT count(*) FROM app.invoices").fetchone()[0]
    assert leaked == 2, "the footgun: the next client inherited tenant 1"
    # Through tenantguard the transaction-local binding wins, every time.
    with TenantPool(dsn, min_size=1, max_size=1, kwargs=NO_PREPARE) as pool:
        for _ in range(5):
            with tenant(3), pool.connection() as conn:
                rows = conn.execute("SELECT tenant_id FROM app.invoices").fetchall()
                assert len(rows) == 6 and {r[0] for r in rows} == {3}
            with tenant(2), pool.connection() as conn:
                assert conn.execute("SELECT count(*) FROM app.invoices").fetchone()[0] == 4
    with psycopg.connect(dsn, autocommit=True, **NO_PREPARE) as cleanup:
        cleanup.execute("RESET app.tenant_id")


def test_tenantguard_session_state_is_reset_through_pgbouncer(bouncer, saas) -> None:  # type: ignore[no-untyped-def]
    dsn = via(bouncer, saas, saas.app_role)
    with TenantPool(dsn, min_size=1, max_size=1, kwargs=NO_PREPARE) as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SET search_path = pg_catalog")
        assert pool.guard_stats.by_kind["search_path"] == 1
    with psycopg.connect(dsn, autocommit=True, **NO_PREPARE) as plain:
        path = plain.execute("SELECT current_setting('search_path')").fetchone()[0]
    assert path == '"$user", public'  # the guard's DISCARD ALL reached the server connection
