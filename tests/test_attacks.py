"""The pool model under attack: SQL sent on one lease against later leases of other tenants.

The attacker controls the SQL that tenant 1's code sends on its leased connection (the
app's own login, no owner or admin role) and nothing else. Each attack runs on a pool of
one connection, so tenant 2's next lease gets the very same server session. Every
defence is shown twice: the attack failing in the default configuration, and the same
attack succeeding once that defence is taken away (the control), so no test here can
pass without the defence doing its work.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from attack_payloads import PSYCOPG_PREPARES
from conftest import temp_granted
from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.core import session as session_mod
from tenantguard.core.guard import STATE_QUERY, snapshot
from tenantguard.drivers.psycopg import fast_path
from tenantguard.errors import (
    ConfigurationError,
    InvalidTenantId,
    LeaseNotHeld,
    SessionStateRefused,
    UnsafeRoleError,
    UnsupportedOperation,
)

TENANT2_NOTE = "tenant 2"  # every invoice of tenant n has the note 'tenant n'


def _no_classifier(pool: TenantPool | AsyncTenantPool) -> None:
    """Take the statement classifier away (for controls): every statement looks clean."""
    pool._core.classifier.effects = lambda query, params=False: frozenset()  # type: ignore[method-assign]


# ----------------------------------------------------------- planted prepared binding

PLANT = [
    "CREATE TEMP TABLE loot (note text)",
    """CREATE FUNCTION pg_temp.steal() RETURNS int LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO pg_temp.loot SELECT note FROM app.invoices;
    RETURN 1;
END $f$""",
    """CREATE FUNCTION pg_temp.plant() RETURNS int LANGUAGE plpgsql AS $f$
DECLARE body text; types regtype[];
BEGIN
    SELECT statement, parameter_types INTO body, types
    FROM pg_prepared_statements WHERE name = '_tg_bind';
    EXECUTE 'DEALLOCATE _tg_bind';
    EXECUTE format('PREPARE _tg_bind(%s) AS %s, pg_temp.steal()',
                   array_to_string(types, ','), body);
    RETURN 1;
END $f$""",
]


def _plant_and_collect(pool: TenantPool) -> list[str]:
    """Tenant 1 replaces the binding; tenant 2 runs a request; tenant 1 reads the loot."""
    with tenant(1), pool.connection() as conn:
        conn.execute("SELECT 1")  # the binding is prepared on this connection
        for stmt in PLANT:
            conn.execute(stmt)
        conn.execute("SELECT pg_temp.plant()")
    with tenant(2), pool.connection() as conn:
        conn.execute("SELECT count(*) FROM app.invoices").fetchone()
    with tenant(1), pool.connection() as conn:
        try:
            rows = conn.execute("SELECT note FROM pg_temp.loot").fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [r[0] for r in rows]


def test_default_install_refuses_temporary_objects(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, session_state="reset", min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="temporary"):
                conn.execute("CREATE TEMP TABLE loot (note text)")
        with tenant(1), pool.connection() as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'")


def test_pool_refuses_a_role_that_can_create_temporary_objects(saas) -> None:  # type: ignore[no-untyped-def]
    with temp_granted(saas):
        with pytest.raises(UnsafeRoleError, match="temporary") as err:
            TenantPool(saas.app_dsn, min_size=1, max_size=1)
        assert "REVOKE TEMPORARY ON DATABASE" in str(err.value)
        with pytest.raises(ConfigurationError, match="verify='always'"):
            TenantPool(saas.app_dsn, allow_temp=True, verify="suspect", open=False)


FALLBACK = pytest.mark.skipif(
    not fast_path()[0], reason="the public-API path sends the binding unnamed: nothing to replace"
)


@FALLBACK
def test_planted_binding_never_runs_for_the_next_tenant(saas) -> None:  # type: ignore[no-untyped-def]
    with temp_granted(saas):
        # Opted in to temporary objects: every checkin is verified, so the planted
        # statement is gone (DISCARD ALL) before tenant 2 gets the connection.
        with TenantPool(
            saas.app_dsn, session_state="reset", min_size=1, max_size=1, allow_temp=True
        ) as pool:
            assert _plant_and_collect(pool) == []
            assert pool.guard_stats.resets >= 1
        # Defence in depth: even with the role check off and verification on suspicion
        # only, creating the temporary function marks the lease and it is reset.
        with TenantPool(
            saas.app_dsn, session_state="reset", min_size=1, max_size=1, check_role=False
        ) as pool:
            assert _plant_and_collect(pool) == []


@FALLBACK
def test_control_planted_binding_leaks_without_the_defences(saas) -> None:  # type: ignore[no-untyped-def]
    """TEMPORARY granted, no role check, no classifier: tenant 2's rows reach tenant 1."""
    with temp_granted(saas):
        with TenantPool(
            saas.app_dsn, session_state="reset", min_size=1, max_size=1, check_role=False
        ) as pool:
            _no_classifier(pool)
            loot = _plant_and_collect(pool)
    assert TENANT2_NOTE in loot


# ----------------------------------------------------------- temp objects that shadow

SHADOW_DOMAIN = [
    "CREATE FUNCTION pg_temp.leak(v pg_catalog.text) RETURNS bool LANGUAGE plpgsql AS $f$ "
    "BEGIN PERFORM pg_catalog.set_config('x.loot', "
    "(SELECT pg_catalog.string_agg(note, ',') FROM app.invoices), false); RETURN true; END $f$",
    "CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.leak(VALUE))",
]
SHADOW_VIEW = [
    "CREATE FUNCTION pg_temp.leak() RETURNS bool LANGUAGE plpgsql AS $f$ "
    "BEGIN PERFORM pg_catalog.set_config('x.loot', "
    "(SELECT pg_catalog.string_agg(note, ',') FROM app.invoices), false); RETURN true; END $f$",
    "CREATE TEMP VIEW invoices AS SELECT * FROM app.invoices WHERE pg_temp.leak()",
]
VICTIM = {  # what tenant 2's code runs (unqualified names, search_path app)
    "domain": "SELECT count(*) FROM invoices WHERE note <> 'x'::text",
    "view": "SELECT count(*) FROM invoices",
}


def _shadow(pool: TenantPool, plant: list[str], victim: str) -> str:
    with tenant(1), pool.connection() as conn:
        for stmt in plant:
            conn.execute(stmt)
    with tenant(2), pool.connection() as conn:
        conn.execute(victim).fetchone()
    with tenant(1), pool.connection() as conn:
        return str(conn.execute("SELECT current_setting('x.loot', true)").fetchone()[0] or "")


def _app_path(saas) -> str:  # type: ignore[no-untyped-def]
    return saas.app_dsn + " options='-c search_path=app,public'"


@pytest.mark.parametrize("variant", ["domain", "view"])
def test_temp_objects_never_run_inside_the_next_tenant(saas, variant: str) -> None:  # type: ignore[no-untyped-def]
    plant = SHADOW_DOMAIN if variant == "domain" else SHADOW_VIEW
    with TenantPool(
        _app_path(saas), session_state="reset", min_size=1, max_size=1
    ) as pool:  # the default
        with tenant(1), pool.connection() as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(plant[0])
    with temp_granted(saas):
        with TenantPool(
            _app_path(saas), session_state="reset", min_size=1, max_size=1, allow_temp=True
        ) as pool:
            assert TENANT2_NOTE not in _shadow(pool, plant, VICTIM[variant])
            assert "temp_object" in pool.guard_stats.by_kind


@pytest.mark.parametrize("variant", ["domain", "view"])
def test_control_temp_objects_leak_without_the_defences(saas, variant: str) -> None:  # type: ignore[no-untyped-def]
    plant = SHADOW_DOMAIN if variant == "domain" else SHADOW_VIEW
    with temp_granted(saas):
        with TenantPool(_app_path(saas), min_size=1, max_size=1, check_role=False) as pool:
            _no_classifier(pool)
            assert TENANT2_NOTE in _shadow(pool, plant, VICTIM[variant])


def test_unqualified_temp_creation_is_flagged(saas) -> None:  # type: ignore[no-untyped-def]
    """CREATE TABLE x after a local search_path = pg_temp, or in pg_temp_N by name."""
    with temp_granted(saas):
        with TenantPool(
            saas.app_dsn, session_state="reset", min_size=1, max_size=1, check_role=False
        ) as pool:
            with tenant(1), pool.connection() as conn:
                with conn.transaction():
                    conn.execute("SET LOCAL search_path = pg_temp")
                    conn.execute("CREATE TABLE sneaky (a int)")
            with tenant(1), pool.connection() as conn:
                schema = conn.execute(
                    "SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()"
                ).fetchone()[0]
                conn.execute(
                    sql.SQL("CREATE TABLE {} (a int)").format(sql.Identifier(schema, "sneaky2"))
                )
            with tenant(2), pool.connection() as conn:
                left = conn.execute(
                    "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
                ).fetchone()[0]
            assert left == 0
            assert pool.guard_stats.resets == 2


# ----------------------------------------------------- state changed inside a function

STATEFUL_FN = """
CREATE FUNCTION pg_temp.dirty(other text) RETURNS int LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM set_config('statement_timeout', '4321', false);
    PERFORM set_config('lock_timeout', '1234', false);
    PERFORM set_config('default_transaction_read_only', 'on', false);
    PERFORM set_config('TimeZone', 'Asia/Tokyo', false);
    PERFORM set_config('DateStyle', 'SQL, DMY', false);
    PERFORM set_config('application_name', 'tenant-1-was-here', false);
    PERFORM set_config('x.secret', 'tenant-1-secret', false);
    PERFORM pg_advisory_lock(4242);
    LISTEN tenant_1_events;
    CREATE TEMP TABLE IF NOT EXISTS leftover (a int);
    EXECUTE format('SET ROLE %I', other);
    RETURN 1;
END $f$
"""
PROBE = """
SELECT current_setting('statement_timeout') = '4321ms',
       current_setting('lock_timeout') = '1234ms',
       current_setting('default_transaction_read_only') = 'on',
       current_setting('TimeZone') = 'Asia/Tokyo',
       current_setting('DateStyle') = 'SQL, DMY',
       current_setting('application_name') = 'tenant-1-was-here',
       current_setting('x.secret', true) = 'tenant-1-secret',
       EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
       EXISTS (SELECT FROM pg_listening_channels()),
       to_regclass('pg_temp.leftover') IS NOT NULL,
       current_user <> session_user
"""


@pytest.fixture(scope="module")
def other_role(saas):  # type: ignore[no-untyped-def]
    role = f"tg_other_{saas.suffix}"
    with saas.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(saas.app_role))
        )
    return role


def test_state_left_inside_a_function_never_reaches_the_next_tenant(saas, other_role) -> None:  # type: ignore[no-untyped-def]
    with temp_granted(saas):
        with TenantPool(
            saas.app_dsn, session_state="reset", min_size=1, max_size=1, allow_temp=True
        ) as pool:
            with tenant(1), pool.connection() as conn:
                conn.execute(STATEFUL_FN)
                conn.execute("SELECT pg_temp.dirty(%s)", (other_role,))
            with tenant(2), pool.connection() as conn:
                assert conn.execute(PROBE).fetchone() == (False,) * 11
            kinds = set(pool.guard_stats.by_kind)
    assert {"settings", "role", "advisory_lock", "listen", "temp_object"} <= kinds, kinds


def test_control_state_left_inside_a_function_reaches_the_next_checkout(saas, other_role) -> None:  # type: ignore[no-untyped-def]
    with temp_granted(saas):
        with ConnectionPool(
            saas.app_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}
        ) as pool:
            with pool.connection() as conn:
                conn.execute(STATEFUL_FN)
                conn.execute("SELECT pg_temp.dirty(%s)", (other_role,))
            with pool.connection() as conn:
                assert conn.execute(PROBE).fetchone() == (True,) * 11


# ----------------------------------------------------- a connection kept past its lease


def test_a_connection_kept_past_its_lease_is_refused(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept = conn
            cur = conn.cursor()
        with tenant(1):
            with pytest.raises(LeaseNotHeld, match="ended"):
                kept.execute("SELECT note FROM app.invoices")
            with pytest.raises(LeaseNotHeld):
                cur.execute("SELECT note FROM app.invoices")
            with pytest.raises(LeaseNotHeld):
                with kept.transaction():
                    pass
        with tenant(2), pool.connection() as conn:
            assert conn is kept  # the same connection, now tenant 2's
            seen: list[BaseException] = []

            def other_thread() -> None:
                with tenant(2):  # even the same tenant: the lease is this thread's
                    try:
                        kept.execute("SELECT 1")
                    except BaseException as exc:
                        seen.append(exc)

            t = threading.Thread(target=other_thread)
            t.start()
            t.join(10)
            assert len(seen) == 1 and isinstance(seen[0], LeaseNotHeld)
            assert "another thread" in str(seen[0])
            rows = conn.execute("SELECT DISTINCT note FROM app.invoices").fetchall()
            assert rows == [(TENANT2_NOTE,)]


def test_control_a_kept_connection_works_without_the_lease_check(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The check taken away (the code before it): a kept connection binds whoever calls."""

    def old_context_for(self, action):  # type: ignore[no-untyped-def]
        ctx = session_mod._current.get()
        if self.lease is None:
            return session_mod.normalize_context(ctx, self.kind)
        return self.lease_bind

    monkeypatch.setattr(session_mod.ConnState, "context_for", old_context_for)
    monkeypatch.setattr(session_mod.ConnState, "check_owner", lambda self: None)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept = conn
        with tenant(3):
            rows = kept.execute("SELECT DISTINCT note FROM app.invoices").fetchall()
    assert rows == [("tenant 3",)]


def test_kept_references_across_threads_stress(saas) -> None:  # type: ignore[no-untyped-def]
    """Threads keep their connections past their leases and keep using them while other
    threads lease the same connections: no foreign row, no thread left blocked."""
    deadline = time.monotonic() + 4
    foreign: list[tuple[int, Any]] = []
    refused = [0]
    done: list[int] = []
    lock = threading.Lock()

    with TenantPool(saas.app_dsn, min_size=2, max_size=2, timeout=10) as pool:

        def worker(tid: int) -> None:
            kept = None
            n = 0
            while time.monotonic() < deadline and n < 400:
                n += 1
                with tenant(tid):
                    with pool.connection() as conn:
                        notes = {r[0] for r in conn.execute("SELECT note FROM app.invoices")}
                        kept = conn
                    if notes != {f"tenant {tid}"}:
                        with lock:
                            foreign.append((tid, notes))
                    try:  # the kept reference, while another thread may hold the lease
                        kept.execute("SELECT note FROM app.invoices").fetchall()
                        with lock:
                            foreign.append((tid, "kept connection ran"))
                    except LeaseNotHeld:
                        with lock:
                            refused[0] += 1
            with lock:
                done.append(tid)

        threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in (1, 2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a thread was left blocked"
    assert sorted(done) == [1, 2, 3]
    assert foreign == []
    assert refused[0] > 0


def test_async_lease_belongs_to_its_task(saas) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(_async_lease_belongs_to_its_task(saas))


async def _async_lease_belongs_to_its_task(saas) -> None:  # type: ignore[no-untyped-def]
    async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1):
            async with pool.connection() as conn:
                kept = conn
                assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)

                async def elsewhere() -> None:
                    await kept.execute("SELECT 1")

                with pytest.raises(LeaseNotHeld, match="another thread or task"):
                    await asyncio.create_task(elsewhere())
            with pytest.raises(LeaseNotHeld, match="ended"):
                await kept.execute("SELECT 1")
        with tenant(2):
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT DISTINCT note FROM app.invoices")
                assert await cur.fetchall() == [(TENANT2_NOTE,)]


# ----------------------------------------- a reset must not break the next tenant


def _prepare_then(pool: TenantPool, attack: str) -> list[Any]:
    query = "SELECT count(*) FROM app.invoices WHERE amount > %s"
    with tenant(1), pool.connection() as conn:
        for _ in range(8):  # past psycopg's prepare_threshold: _pg3_N on the server
            conn.execute(query, (0,)).fetchone()
        (name,) = conn.execute(
            "SELECT name FROM pg_prepared_statements WHERE statement LIKE '%amount > $1'"
        ).fetchone()
        conn.execute(attack.format(name=name))
    out = []
    with tenant(2), pool.connection() as conn:
        for _ in range(3):
            out.append(conn.execute(query, (0,)).fetchone()[0])
        with conn.transaction():
            out.append(conn.execute(query, (0,)).fetchone()[0])
    return out


@pytest.mark.parametrize("attack", ["DEALLOCATE {name}", "DEALLOCATE ALL"])
def test_dropped_driver_statements_do_not_fail_the_next_tenant(saas, attack: str) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(
        saas.app_dsn, session_state="reset", min_size=1, max_size=1, kwargs=PSYCOPG_PREPARES
    ) as pool:
        assert _prepare_then(pool, attack) == [4, 4, 4, 4]
        if not fast_path()[0]:
            return  # the public-API path has no re-prepare: the classifier is the defence
        # Without the classifier's help, the fast path notices the missing statement
        # (nothing ran) and prepares again.
        _no_classifier(pool)
        assert _prepare_then(pool, "DEALLOCATE {name}") == [4, 4, 4, 4]


def test_control_dropped_driver_statement_fails_the_next_checkout(saas) -> None:  # type: ignore[no-untyped-def]
    query = "SELECT count(*) FROM app.invoices WHERE amount > %s"
    with ConnectionPool(
        saas.admin_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}
    ) as pool:
        with pool.connection() as conn:
            for _ in range(8):
                conn.execute(query, (0,)).fetchone()
            conn.execute("DEALLOCATE _pg3_0")
        with pool.connection() as conn:
            with pytest.raises(psycopg.errors.InvalidSqlStatementName):
                conn.execute(query, (0,))


# ------------------------------------------------------------------ tenant id aliasing

ALIASES = ["0x2", "+2", "0_2", "0b10", "002", " 2", "2 ", "0o2"]


@pytest.mark.parametrize("alias", ALIASES)
def test_tenant_id_aliases_are_refused_before_io(saas, alias: str) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:  # no tenant_kind given
        assert pool._core.tenant_kind == "bigint"  # inferred from the protected tables
        with pytest.raises(InvalidTenantId):
            with tenant(alias), pool.connection() as conn:
                conn.execute("SELECT note FROM app.invoices")


def test_int_subclass_binds_its_number(saas) -> None:  # type: ignore[no-untyped-def]
    class Sneaky(int):
        def __str__(self) -> str:
            return "2"

        __repr__ = __str__

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(Sneaky(1)), pool.connection() as conn:
            rows = conn.execute("SELECT DISTINCT note FROM app.invoices").fetchall()
    assert rows == [("tenant 1",)]


def test_control_the_server_accepts_aliases(saas) -> None:  # type: ignore[no-untyped-def]
    """Sent as text and cast by the policy, another spelling reaches tenant 2."""
    with saas.app() as conn:
        version = conn.info.server_version
        aliases = ["+2", "002"] + (["0x2", "0_2", "0b10"] if version >= 160000 else [])
        for alias in aliases:
            with conn.transaction():
                conn.execute("SELECT set_config('app.tenant_id', %s, true)", (alias,))
                rows = conn.execute("SELECT DISTINCT note FROM app.invoices").fetchall()
            assert rows == [(TENANT2_NOTE,)], alias


def test_async_kept_references_across_tasks_stress(saas) -> None:  # type: ignore[no-untyped-def]
    """The asyncio twin of the thread stress test: tasks keep their connections."""

    async def main() -> tuple[list[Any], int]:
        foreign: list[Any] = []
        refused = 0
        async with AsyncTenantPool(saas.app_dsn, min_size=2, max_size=2, timeout=10) as pool:

            async def worker(tid: int) -> None:
                nonlocal refused
                for _ in range(150):
                    with tenant(tid):
                        async with pool.connection() as conn:
                            cur = await conn.execute("SELECT note FROM app.invoices")
                            notes = {r[0] for r in await cur.fetchall()}
                            kept = conn
                        if notes != {f"tenant {tid}"}:
                            foreign.append((tid, notes))
                        try:
                            await kept.execute("SELECT note FROM app.invoices")
                            foreign.append((tid, "kept connection ran"))
                        except LeaseNotHeld:
                            refused += 1
                    await asyncio.sleep(0)

            await asyncio.wait_for(asyncio.gather(*(worker(t) for t in (1, 2, 3))), 60)
        return foreign, refused

    foreign, refused = asyncio.run(main())
    assert foreign == []
    assert refused == 450


@FALLBACK
def test_async_dropped_driver_statement_and_temp_refusal(saas) -> None:  # type: ignore[no-untyped-def]
    async def main() -> list[int]:
        query = "SELECT count(*) FROM app.invoices WHERE amount > %s"
        out: list[int] = []
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            _no_classifier(pool)  # only the request path's re-prepare is left
            with tenant(1):
                async with pool.connection() as conn:
                    for _ in range(8):
                        await (await conn.execute(query, (0,))).fetchone()
                    cur = await conn.execute(
                        "SELECT name FROM pg_prepared_statements WHERE statement LIKE '%amount%'"
                    )
                    (name,) = await cur.fetchone()  # type: ignore[misc]
                    await conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        await conn.execute("CREATE TEMP TABLE loot (note text)")
            with tenant(2):
                async with pool.connection() as conn:
                    for _ in range(3):
                        row = await (await conn.execute(query, (0,))).fetchone()
                        out.append(row[0])  # type: ignore[index]
        return out

    assert asyncio.run(main()) == [4, 4, 4]


# ------------------------------------------------ the login's own persistent defaults


def _role_defaults(saas) -> list[str]:  # type: ignore[no-untyped-def]
    with saas.admin() as conn:
        rows = conn.execute(
            "SELECT cfg FROM pg_db_role_setting s, unnest(s.setconfig) cfg "
            "JOIN pg_roles r ON true WHERE r.rolname = %s AND s.setrole = r.oid",
            (saas.app_role,),
        ).fetchall()
    return [r[0] for r in rows]


def _reset_role_defaults(saas, setting: str) -> None:  # type: ignore[no-untyped-def]
    with saas.admin() as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} RESET {}").format(
                sql.Identifier(saas.app_role), sql.Identifier(setting)
            )
        )


def test_alter_role_set_is_refused_before_sending(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        for stmt in (
            "ALTER ROLE CURRENT_USER SET statement_timeout = 1",
            "ALTER USER CURRENT_USER SET search_path = pg_catalog",
        ):
            with tenant(1), pool.connection() as conn:
                with pytest.raises(UnsupportedOperation, match="nothing was sent"):
                    conn.execute(stmt)
                with pytest.raises(UnsupportedOperation):
                    with conn.transaction():
                        conn.execute(stmt)
    assert _role_defaults(saas) == ["track_activities=off"]  # what install set, only


def test_control_alter_role_set_reaches_every_new_connection(saas) -> None:  # type: ignore[no-untyped-def]
    try:
        with saas.app() as conn:
            conn.execute("ALTER ROLE CURRENT_USER SET statement_timeout = 1")
        with saas.app() as fresh:
            assert fresh.execute("SHOW statement_timeout").fetchone()[0] == "1ms"
    finally:
        _reset_role_defaults(saas, "statement_timeout")


def test_alter_role_inside_code_is_caught_and_new_connections_refused(saas) -> None:  # type: ignore[no-untyped-def]
    """From a DO block the statement cannot be seen before it runs: the checkin finds the
    changed default, closes the connection, and new connections are refused (fail closed,
    with the setting named) instead of starting with the planted default."""
    from psycopg_pool import PoolTimeout

    try:
        with TenantPool(saas.app_dsn, session_state="reset", min_size=1, max_size=1) as pool:
            with tenant(1), pool.connection() as conn:
                conn.execute(
                    "DO $$ BEGIN EXECUTE 'ALTER ROLE CURRENT_USER SET lock_timeout = 1234'; END $$"
                )
            assert pool.guard_stats.discards == 1
            assert "role_defaults" in pool.guard_stats.by_kind
            with pytest.raises(PoolTimeout), tenant(2), pool.connection(timeout=2):
                pass
            with pytest.raises(ConfigurationError, match="lock_timeout=1234"):
                with psycopg.connect(saas.app_dsn, autocommit=True) as raw:
                    row = raw.execute(STATE_QUERY, ("app.tenant_id", "app.user_id")).fetchone()
                    pool._core.check_role_defaults(snapshot(row).role_defaults)
    finally:
        _reset_role_defaults(saas, "lock_timeout")
    with TenantPool(
        saas.app_dsn, session_state="reset", min_size=1, max_size=1
    ) as pool:  # reset: works again
        with tenant(2), pool.connection() as conn:
            assert conn.execute("SHOW lock_timeout").fetchone()[0] == "0"


# ----------------------------------------------------- refused before sending (review)


@pytest.mark.parametrize(
    "statement, effect",
    [
        ("ALTER ROLE CURRENT_USER PASSWORD 'locked-out'", "ALTER ROLE"),
        ("ALTER USER CURRENT_USER VALID UNTIL '2000-01-01'", "ALTER ROLE"),
        ("SELECT pg_terminate_backend(pg_backend_pid() + 0)", "pg_terminate_backend"),
        ("SELECT pg_cancel_backend(1)", "pg_cancel_backend"),
        ("SELECT setseed(0.5)", "setseed"),
    ],
)
@pytest.mark.parametrize("mode", ["refuse", "reset"])
def test_statements_reaching_beyond_the_lease_are_never_sent(saas, statement, effect, mode) -> None:  # type: ignore[no-untyped-def]
    """Refused whatever session_state says: a new password locks every new connection
    out, a signal stops other tenants' connections, a seed makes their random() known."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state=mode) as pool:
        with tenant(1), pool.connection() as conn:
            with pytest.raises(UnsupportedOperation, match=effect) as err:
                conn.execute(statement)
            assert "nothing was sent" in str(err.value)
    with psycopg.connect(saas.app_dsn) as fresh:  # the login still works, as before
        assert fresh.execute("SELECT 1").fetchone() == (1,)


def test_control_the_same_statements_reach_beyond_a_plain_lease(saas) -> None:  # type: ignore[no-untyped-def]
    """Without the classifier: the seed outlives the lease, another connection is stopped."""
    with TenantPool(saas.app_dsn, min_size=2, max_size=2, session_state="reset") as pool:
        _no_classifier(pool)
        with tenant(1), pool.connection() as victim:
            victim_pid = victim.info.backend_pid
            with tenant(1), pool.connection() as attacker:
                attacker.execute("SELECT setseed(0.5)")
                expected = attacker.execute("SELECT random()").fetchone()[0]
                attacker.execute("SELECT setseed(0.5)")  # the seed stays for the next lease
                assert attacker.execute(
                    "SELECT pg_terminate_backend(%s)", (victim_pid,)
                ).fetchone() == (True,)
                pid = attacker.info.backend_pid
            with pytest.raises(psycopg.OperationalError):
                victim.execute("SELECT 1")
        for _ in range(3):
            with tenant(2), pool.connection() as conn:
                if conn.info.backend_pid == pid:
                    assert conn.execute("SELECT random()").fetchone()[0] == expected
                    return
    pytest.fail("tenant 2 never got the attacker's connection")


def test_sql_text_run_by_built_ins_is_classified(saas) -> None:  # type: ignore[no-untyped-def]
    """ts_stat / query_to_xml run SQL given as text: the text is classified too."""
    hidden = (
        "SELECT count(*) FROM pg_catalog.ts_stat('SELECT pg_catalog.to_tsvector("
        "pg_catalog.set_config(''statement_timeout'', ''1'', false))')"
    )
    computed = "SELECT count(*) FROM pg_catalog.ts_stat(%s)"
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            with pytest.raises(SessionStateRefused, match="set_config"):
                conn.execute(hidden)
            with pytest.raises(SessionStateRefused, match="opaque_code"):
                conn.execute(computed, ("SELECT to_tsvector('x')",))
            # transaction-local forms are sent
            with conn.transaction():
                conn.execute("SET LOCAL search_path = public")
            assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)


def test_control_sql_text_in_built_ins_outlives_the_lease(saas) -> None:  # type: ignore[no-untyped-def]
    hidden = (
        "SELECT count(*) FROM pg_catalog.ts_stat('SELECT pg_catalog.to_tsvector("
        "pg_catalog.set_config(''work_mem'', ''77kB'', false))')"
    )
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state="reset") as pool:
        _no_classifier(pool)
        with tenant(1), pool.connection() as conn:
            conn.execute(hidden)
        with tenant(2), pool.connection() as conn:
            assert conn.execute("SHOW work_mem").fetchone() == ("77kB",)


# ----------------------------------------------- a kept connection, Python-side state


def test_a_kept_connection_cannot_commit_or_fetch_in_another_lease(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept = conn
        caught: list[BaseException] = []

        def meddle() -> None:
            for op in (kept.commit, kept.rollback):
                try:
                    op()
                except LeaseNotHeld as exc:
                    caught.append(exc)

        with tenant(2), pool.connection() as conn:
            conn.execute("BEGIN")  # (inside conn.transaction() psycopg refuses commit() itself)
            conn.execute("INSERT INTO app.invoices (tenant_id, amount, note) VALUES (2, 1, 'x')")
            with conn.cursor("held") as cur:
                cur.execute("SELECT id FROM app.invoices")
                t = threading.Thread(target=meddle)
                t.start()
                t.join()
                box: list[BaseException] = []

                def fetch() -> None:
                    try:
                        cur.fetchone()
                    except LeaseNotHeld as exc:
                        box.append(exc)

                t = threading.Thread(target=fetch)
                t.start()
                t.join()
                assert len(box) == 1
                assert cur.fetchone() is not None  # the owner's cursor still works
            assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert len(caught) == 2


NOTICE = "DROP TABLE IF EXISTS public.tenant_2_secret_name"  # NOTICE: ... does not exist


def test_python_side_state_never_reaches_the_next_lease(saas) -> None:  # type: ignore[no-untyped-def]
    """A notice handler or read_only left on the connection object by tenant 1's lease:
    the connection is replaced at checkin (kind client_state)."""
    notices: list[str] = []
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            pid = conn.info.backend_pid
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            conn.read_only = True
        with tenant(2), pool.connection() as conn:
            assert conn.info.backend_pid != pid  # a fresh connection
            assert conn.read_only is None
            conn.execute(NOTICE)
            with conn.transaction():
                conn.execute(
                    "INSERT INTO app.invoices (tenant_id, amount, note) VALUES (2, 1, 'y')"
                )
        assert pool.guard_stats.by_kind["client_state"] == 1
    assert notices == []


def test_control_python_side_state_reaches_the_next_lease_without_the_check(saas) -> None:  # type: ignore[no-untyped-def]
    notices: list[str] = []
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            conn._tg_state.client = None  # the check away
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            conn.read_only = True
        with tenant(2), pool.connection() as conn:
            conn.execute(NOTICE)
            assert conn.read_only is True
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
                conn.execute(
                    "INSERT INTO app.invoices (tenant_id, amount, note) VALUES (2, 1, 'y')"
                )
    assert any("tenant_2_secret_name" in n for n in notices), notices


def test_control_a_kept_connection_commits_another_tenants_transaction(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.drivers.psycopg import _connection, _connection_async

    for module in (_connection, _connection_async):  # the checks away
        monkeypatch.setattr(module, "held", lambda conn: None)
        monkeypatch.setattr(module, "screen_wait", lambda conn, st, gen: None)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            kept = conn
        with tenant(2), pool.connection() as conn:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM app.invoices")
            t = threading.Thread(target=kept.commit)
            t.start()
            t.join()
            # tenant 2's transaction was ended under it by another thread
            assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_python_side_state_never_reaches_the_next_lease_async(saas) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                pid = conn.info.backend_pid
                await conn.set_read_only(True)
            async with pool.connection(tenant_id=1) as conn:
                assert conn.info.backend_pid != pid and conn.read_only is None
                default = conn.prepare_threshold  # (None on the public-API path)
                conn.prepare_threshold = 0 if default is None else None
            async with pool.connection(tenant_id=2) as conn:
                assert conn.prepare_threshold == default  # the pool's, not the lease's
            assert pool.guard_stats.by_kind["client_state"] == 2

    asyncio.run(main())
