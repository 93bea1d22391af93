"""The checkin guard: session state left by one tenant never reaches the next.

Each contamination is done by tenant 1 on a pool of one connection; tenant 2's next
request checks it sees none of it. The control test shows the same state does carry
over on a plain psycopg_pool pool, so each check here can fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from conftest import temp_granted
from tenantguard import TenantPool, tenant
from tenantguard.errors import SessionStateRefused


@dataclass(frozen=True)
class Contamination:
    name: str
    kind: str  # the guard's kind for it
    dirty: list[str]  # what tenant 1 runs
    probe: str  # what tenant 2 runs; returns one value
    clean: Callable[[object], bool]  # is the probe's value clean?
    control: list[str] | None = None  # tenant-free variant for the plain-pool control
    # Temporary objects need TEMPORARY on the database, which install revokes: these run
    # with it granted back and a pool made with allow_temp=True (tests/test_attacks.py
    # shows the default refusing them).
    needs_temp: bool = False


def _none_or_empty(v: object) -> bool:
    return v in (None, "")


CASES = [
    Contamination(
        "set role",
        "role",
        ["SET ROLE {other}"],
        "SELECT current_user",
        lambda v: str(v).startswith("tg_app_"),
    ),
    Contamination(
        "search_path",
        "search_path",
        ["SET search_path = pg_catalog"],
        "SELECT current_setting('search_path')",
        lambda v: v == '"$user", public',
    ),
    Contamination(
        "app setting via SET",
        "setting:app.flag",
        ["SET app.flag = 'tenant-1-secret'"],
        "SELECT current_setting('app.flag', true)",
        _none_or_empty,
    ),
    Contamination(
        "tenant setting via SET",
        "setting:app.tenant_id",
        ["SET app.tenant_id = '1'"],
        "SELECT 1 WHERE false",
        lambda v: True,
    ),
    Contamination(
        "set_config session",
        "setting:set_config",
        ["SELECT set_config('app.flag', 'x', false)"],
        "SELECT current_setting('app.flag', true)",
        _none_or_empty,
    ),
    Contamination(
        "temp table shadowing app.invoices",
        "temp_object",
        ["CREATE TEMP TABLE invoices AS SELECT * FROM app.invoices"],
        "SELECT to_regclass('pg_temp.invoices')",
        lambda v: v is None,
        ["CREATE TEMP TABLE invoices (x int)"],
        needs_temp=True,
    ),
    Contamination(
        "listen",
        "listen",
        ["LISTEN tenant_1_events"],
        "SELECT count(*) FROM pg_listening_channels()",
        lambda v: v == 0,
    ),
    Contamination(
        "advisory lock",
        "advisory_lock",
        ["SELECT pg_advisory_lock(4242)"],
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
        lambda v: v == 0,
    ),
    Contamination(
        "prepared statement",
        "prepared_statement",
        ["PREPARE tenant1_stmt AS SELECT * FROM app.invoices"],
        "SELECT count(*) FROM pg_prepared_statements WHERE from_sql",
        lambda v: v == 0,
    ),
    Contamination(
        "with hold cursor",
        "hold_cursor",
        ["DECLARE held CURSOR WITH HOLD FOR SELECT note FROM app.invoices"],
        "SELECT count(*) FROM pg_cursors WHERE is_holdable",
        lambda v: v == 0,
        ["DECLARE held CURSOR WITH HOLD FOR SELECT 1"],
    ),
    Contamination(
        "open transaction",
        "open_transaction",
        ["BEGIN", "INSERT INTO app.invoices (tenant_id, amount, note) VALUES (1, 1, 'left-open')"],
        "SELECT count(*) FROM app.invoices WHERE note = 'left-open'",
        lambda v: v == 0,
    ),
    Contamination(
        "aborted transaction",
        "aborted_transaction",
        ["BEGIN", "SELECT 1/0"],
        "SELECT 1",
        lambda v: v == 1,
    ),
    Contamination(
        "DO block",
        "opaque_code",
        ["DO $$ BEGIN PERFORM set_config('app.flag', 'from-do', false); END $$"],
        "SELECT current_setting('app.flag', true)",
        _none_or_empty,
    ),
]


@pytest.fixture(scope="module")
def other_role(saas):  # type: ignore[no-untyped-def]
    role = f"tg_other_{saas.suffix}"
    with saas.admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(saas.app_role))
        )
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA app TO {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA app TO {}").format(sql.Identifier(role))
        )
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA tenantguard TO {}").format(sql.Identifier(role))
        )
    return role


def _dirty(conn, case: Contamination, other: str, control: bool = False) -> None:  # type: ignore[no-untyped-def]
    for stmt in (case.control or case.dirty) if control else case.dirty:
        try:
            conn.execute(stmt.replace("{other}", sql.Identifier(other).as_string()))
        except psycopg.errors.DivisionByZero:
            pass  # the aborted-transaction case: the caller swallows the error


# What the guard catches at checkin whatever the mode: transactions left open or aborted.
_AT_CHECKIN = {"open_transaction", "aborted_transaction"}


@pytest.mark.parametrize("mode", ["refuse", "reset"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_next_tenant_sees_none_of_it(saas, other_role, case: Contamination, mode, caplog) -> None:  # type: ignore[no-untyped-def]
    """session_state="refuse" (the default) refuses the statement before sending it;
    "reset" sends it and the checkin guard resets the connection."""
    with (
        temp_granted(saas, case.needs_temp),
        TenantPool(
            saas.app_dsn,
            min_size=1,
            max_size=1,
            allow_temp=case.needs_temp,
            session_state=mode,
        ) as pool,
    ):
        with tenant(2), pool.connection() as conn:
            pid = conn.info.backend_pid
        caplog.set_level(logging.WARNING, logger="tenantguard.guard")
        if mode == "refuse" and case.kind not in _AT_CHECKIN:
            with tenant(1), pool.connection() as conn:
                with pytest.raises(SessionStateRefused) as err:
                    _dirty(conn, case, other_role)
                assert case.kind in err.value.effects
            with tenant(2), pool.connection() as conn:
                assert conn.info.backend_pid == pid
                value = conn.execute(case.probe).fetchone()
                assert case.clean(value[0] if value else None), f"{case.name}: {value}"
                assert conn.execute("SELECT count(*) FROM app.invoices").fetchone()[0] == 4
            assert pool.guard_stats.contaminated == 0  # nothing was sent: nothing to reset
            return
        with tenant(1), pool.connection() as conn:
            assert conn.info.backend_pid == pid  # same physical connection
            _dirty(conn, case, other_role)
        with tenant(2), pool.connection() as conn:
            assert conn.info.backend_pid == pid  # reset, not replaced
            value = conn.execute(case.probe).fetchone()
            assert case.clean(value[0] if value else None), f"{case.name}: {value}"
            # tenant 2 still sees exactly its own rows, as itself
            assert conn.execute("SELECT count(*) FROM app.invoices").fetchone()[0] == 4
        stats = pool.guard_stats
        assert stats.contaminated == 1 and stats.resets == 1
        assert case.kind in stats.by_kind, stats.by_kind
        assert stats.by_tenant == {"1": 1}
        assert any(
            "tenant 1" in r.getMessage() and case.kind in r.getMessage() for r in caplog.records
        )


CONTROL = [
    c
    for c in CASES
    if c.name
    in {
        "set role",
        "search_path",
        "app setting via SET",
        "temp table shadowing app.invoices",
        "listen",
        "advisory lock",
        "prepared statement",
        "with hold cursor",
    }
]


@pytest.mark.parametrize("case", CONTROL, ids=[c.name for c in CONTROL])
def test_control_plain_psycopg_pool_carries_it_over(saas, other_role, case: Contamination) -> None:  # type: ignore[no-untyped-def]
    """Without the guard the same state reaches the next checkout: the footgun is real."""
    with (
        temp_granted(saas, case.needs_temp),
        ConnectionPool(
            saas.app_dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True
        ) as pool,
    ):
        with pool.connection() as conn:
            _dirty(conn, case, other_role, control=True)
        with pool.connection() as conn:
            value = conn.execute(case.probe).fetchone()
            assert not case.clean(value[0] if value else None)


def test_clean_requests_cost_no_verification(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        for t in (1, 2, 3) * 10:
            with tenant(t), pool.connection() as conn:
                conn.execute("SELECT count(*) FROM app.invoices").fetchone()
                with conn.transaction():
                    conn.execute("SET LOCAL statement_timeout = '5s'")  # local: harmless
                    conn.execute("SELECT 1")
        assert pool.guard_stats.checkins == 30
        assert pool.guard_stats.verified == 0 and pool.guard_stats.contaminated == 0


def test_discard_mode_replaces_the_connection(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(
        saas.app_dsn, min_size=1, max_size=1, on_contamination="discard", session_state="reset"
    ) as pool:
        with tenant(1), pool.connection() as conn:
            pid = conn.info.backend_pid
            conn.execute("SET search_path = pg_catalog")
        with tenant(2), pool.connection() as conn:
            assert conn.info.backend_pid != pid
            assert (
                conn.execute("SELECT current_setting('search_path')").fetchone()[0]
                == '"$user", public'
            )
        assert pool.guard_stats.discards == 1


def test_verify_always_catches_state_hidden_in_trusted_functions(saas) -> None:  # type: ignore[no-untyped-def]
    # A function the statement classifier cannot see into.
    with saas.admin() as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION public.take_lock() RETURNS int LANGUAGE sql "
            "AS 'SELECT 1 FROM (SELECT pg_advisory_lock(777)) s'"
        )
        conn.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION public.take_lock() TO {}").format(
                sql.Identifier(saas.app_role)
            )
        )
    probe = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, verify="suspect") as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT public.take_lock()")
        with tenant(2), pool.connection() as conn:
            assert conn.execute(probe).fetchone()[0] == 1  # documented limit of "suspect"
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, verify="always") as pool:
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT public.take_lock()")
        with tenant(2), pool.connection() as conn:
            assert conn.execute(probe).fetchone()[0] == 0
        assert pool.guard_stats.by_kind["advisory_lock"] == 1
