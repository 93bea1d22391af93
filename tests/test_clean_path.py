"""What the checkin guard's clean path and a lease's first statement may skip, and why not more.

Two reads of what the server reports (``ParameterStatus``) are left out of the request path:

* a lease's first statement does not read :data:`~tenantguard.core.session.LEXER_PARAMS`:
  the checkin guard's clean path compared them with the baseline when the last lease ended,
  and nothing was sent since. Anything sent in between (psycopg's own cursor driven on the
  leased connection, tenantguard's internal statements) makes the next statement read them;
* a pool that pins role and search_path in every binding and refuses a superuser login
  does not read ``search_path`` and ``session_authorization`` at checkin: a search_path left
  on the connection never reaches the next lease's statements, and only a superuser can
  change the session authorization.

Each defence is shown holding, next to a control that shows the attack working without it.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from attack_payloads import DEFENDED, MISREAD, SCS_OFF_PLAIN, blind
from tenantguard import TenantPool, tenant
from tenantguard.core.session import ConnState
from tenantguard.drivers.psycopg import _connection, _pool_base
from tenantguard.errors import UnsupportedOperation


def _without_the_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: what psycopg sends on the lease's behalf leaves ``lexer_ok`` as it was."""
    real = _connection.screen_wait

    def screen_wait(conn: Any, st: ConnState, gen: Any) -> None:
        ok = st.lexer_ok
        real(conn, st, gen)
        st.lexer_ok = ok

    monkeypatch.setattr(_connection, "screen_wait", screen_wait)


@DEFENDED
def test_a_lexer_change_sent_unscreened_is_read_by_the_next_statement(
    saas: Any, monkeypatch: pytest.MonkeyPatch, defended: bool
) -> None:
    if not defended:
        _without_the_reset(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state="reset") as pool:
        blind(pool)
        with tenant(1), pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM app.invoices").fetchone() == (2,)
        assert conn._tg_state.lexer_ok  # the clean checkin compared LEXER_PARAMS
        with tenant(1), pool.connection() as conn:
            psycopg.Cursor(conn).execute(SCS_OFF_PLAIN)  # psycopg's own cursor: not screened
            if defended:
                with pytest.raises(UnsupportedOperation, match="standard_conforming_strings"):
                    conn.execute(MISREAD)
            else:
                row = conn.execute(MISREAD).fetchone()
                assert row is not None and row[2] == 4  # tenant 2's invoices, in tenant 1's lease
        # either way the connection is replaced (an unscreened send) before the next lease
        with tenant(1), pool.connection() as conn:
            assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)


def test_the_first_statement_skips_the_read_only_after_a_clean_checkin(saas: Any) -> None:
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            st = conn._tg_state
            assert not st.lexer_ok  # a new connection: nothing compared yet
            conn.execute("SELECT 1")
            assert not st.lexer_ok
        assert st.lexer_ok
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")
            assert not st.lexer_ok  # the second statement of a lease reads them
        with tenant(1), pool.connection() as conn, conn.transaction():
            assert not st.lexer_ok  # BEGIN and the binding were sent: the next one reads
        pool._core.verify = "always"  # the clean path is not taken: no skip after it
        with tenant(1), pool.connection() as conn:
            conn.execute("SELECT 1")
        assert not st.lexer_ok


PATH = "SELECT pg_catalog.current_setting('search_path')"
EVIL = "SELECT pg_catalog.set_config('search_path', 'pg_temp, app, public', false)"


@DEFENDED
def test_a_search_path_left_on_the_connection_never_reaches_the_next_lease(
    saas: Any, monkeypatch: pytest.MonkeyPatch, defended: bool
) -> None:
    """A pinned pool reads only LEXER_PARAMS at checkin (no search_path, which the server
    reports from PostgreSQL 18): the pin sets it back in every transaction. The control
    unpins the pool and makes its clean path read the same two parameters."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, pin_session=defended) as pool:
        assert (pool._core.clean_reported is _pool_base._reported_lexer) == defended
        if not defended:
            monkeypatch.setattr(pool._core, "clean_reported", _pool_base._reported_lexer)
        blind(pool)
        with tenant(1), pool.connection() as conn:
            default = conn.execute(PATH).fetchone()
            conn.execute(EVIL)
        with tenant(2), pool.connection() as conn:
            now = conn.execute(PATH).fetchone()
        if defended:
            assert now == default and pool.guard_stats.contaminated == 0
        else:
            assert now == ("pg_temp, app, public",)


def test_an_unpinned_or_unchecked_pool_reads_everything_at_checkin(saas: Any) -> None:
    for kwargs in ({"pin_session": False}, {"check_role": False}):
        with TenantPool(saas.app_dsn, min_size=1, max_size=1, **kwargs) as pool:
            assert pool._core.clean_reported is _pool_base._reported
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        assert pool._core.clean_reported is _pool_base._reported_lexer
