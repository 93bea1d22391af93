"""A lexer differential: SQL that the classifier reads as one statement and the server as three.

The attack (found in review): a ``set_config`` hidden in the SQL text of an SPI built-in
(``ts_stat``) turns ``standard_conforming_strings`` off for the session. From then on
``'a\\' --'...`` is one string literal and a comment to the classifier, but a string
followed by more statements to the server. The hidden statements replace tenantguard's
prepared binding (``_tg_bind``) with one that binds tenant 2, so tenant 1's next lease reads
tenant 2's rows.

Four layers stop it; each test below takes the earlier ones away and shows the next one
holding, and the control takes all of them away and shows the leak.
"""

from __future__ import annotations

import pytest

from tenantguard import TenantContext, TenantPool, tenant
from tenantguard.core.ids import parse_tenant_id
from tenantguard.drivers.psycopg import fast_path
from tenantguard.errors import UnsupportedOperation

pytestmark = pytest.mark.skipif(
    not fast_path()[0], reason="the public-API path sends the binding unnamed: nothing to replace"
)

SCS_OFF = (
    "SELECT count(*) FROM pg_catalog.ts_stat('SELECT pg_catalog.to_tsvector(pg_catalog.set_config("
    "''standard_conforming_strings'', ''off'', false))')"
)
COUNT = "SELECT count(*) FROM app.invoices"


def _hidden(nparams: int) -> str:
    """One SELECT to the classifier; SELECT, DEALLOCATE, PREPARE to the server (scs off)."""
    types = ", ".join(["text"] * nparams)
    planted = (
        f"PREPARE _tg_bind({types}) AS SELECT pg_catalog.set_config('app.tenant_id', '2', true)"
    )
    return f"SELECT 'a\\' --'; DEALLOCATE _tg_bind; {planted}; SELECT 1"


def _blind(pool: TenantPool) -> None:
    """Layer 1 away: every statement looks clean to the classifier."""
    pool._core.classifier.effects = lambda query, params=False: frozenset()  # type: ignore[method-assign]


def _attack(pool: TenantPool) -> None:
    nparams = len(pool._core.binder.bind_query(TenantContext(parse_tenant_id(1)))[1])
    with tenant(1), pool.connection() as conn:
        assert conn.execute(COUNT).fetchone() == (2,)  # prepares the binding
        conn.execute(SCS_OFF)
        with conn.transaction():  # the simple query protocol: several statements per text
            conn.execute(_hidden(nparams))


def _next_lease_count(pool: TenantPool) -> int:
    with tenant(1), pool.connection() as conn:
        return int(conn.execute(COUNT).fetchone()[0])  # type: ignore[index]


def test_layer1_the_hidden_set_config_is_classified_and_refused(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            with pytest.raises(UnsupportedOperation, match="standard_conforming_strings"):
                conn.execute(SCS_OFF)
            assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)
        assert _next_lease_count(pool) == 2


def test_layer2_a_changed_lexer_setting_stops_every_later_statement(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state="reset") as pool:
        _blind(pool)
        with pytest.raises(UnsupportedOperation, match="standard_conforming_strings"):
            _attack(pool)
        assert _next_lease_count(pool) == 2
        assert pool.guard_stats.by_kind["lexer"] == 1  # and the connection was reset


def test_layer3_the_checkin_guard_sees_the_reported_parameter_change(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state="reset") as pool:
        _blind(pool)
        with tenant(1), pool.connection() as conn:
            conn._tg_state.lexer = None  # layer 2 away
        _attack(pool)
        assert _next_lease_count(pool) == 2
        assert pool.guard_stats.resets == 1
        assert {"settings", "prepared_statement"} <= set(pool.guard_stats.by_kind)


def test_control_with_every_layer_away_tenant_1_reads_tenant_2s_rows(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state="reset") as pool:
        _blind(pool)
        with tenant(1), pool.connection() as conn:
            conn._tg_state.lexer = None
        # the checkin guard's read of what the server reports (layer 3) away
        monkeypatch.setattr(
            pool._core, "clean_reported", lambda pg: conn._tg_state.baseline_reported
        )
        _attack(pool)
        assert _next_lease_count(pool) == 4  # tenant 2's rows, bound by the planted statement
        assert pool.guard_stats.contaminated == 0
