"""The nineteenth adversarial review: PostgreSQL reads a field selection that names no
column, ``(x).f`` or ``t.col.f``, as the call ``f(x)``; pglast keeps it as a field
selection, so every check by function name missed it (default configuration).

Tenant 1's lease ended tenant 2's pooled connections (``(pid).pg_terminate_backend``), left
``default_transaction_read_only`` on for the next tenant through ts_stat's SQL text
(``($$...$$::text).ts_stat``), kept a session advisory lock, and read ``currval`` after
tenant 2's insert. Each spelling is now checked as the call it may be (control: the
classifier without that reading).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from conftest import Scratch
from tenantguard import TenantPool, tenant
from tenantguard.core import classify
from tenantguard.errors import SessionStateRefused, UnsupportedOperation

READ_ONLY = (
    "SELECT ($$SELECT pg_catalog.set_config('default_transaction_read_only', 'on', false)"
    "::tsvector$$::text).ts_stat"
)
SPELLINGS = [
    ("SELECT (pid).pg_terminate_backend FROM pg_stat_activity WHERE false", UnsupportedOperation),
    ("SELECT a.pid.pg_cancel_backend FROM pg_stat_activity a WHERE false", UnsupportedOperation),
    ("SELECT (0.5::float8).setseed", UnsupportedOperation),
    ("SELECT ('app.tickets'::regclass).currval", UnsupportedOperation),
    ("SELECT (42::bigint).pg_advisory_lock", SessionStateRefused),
    (READ_ONLY, SessionStateRefused),
    # (the same review: a SET grant on it is all it takes; it switches off triggers and
    # foreign-key checks, so it is refused in every spelling)
    ("SET LOCAL session_replication_role = replica", UnsupportedOperation),
    ("SELECT set_config('session_replication_role', 'replica', true)", UnsupportedOperation),
]


def _pool(s: Scratch) -> TenantPool:
    return TenantPool(s.app_dsn, min_size=1, max_size=1, open=True)


@pytest.mark.parametrize(("query", "error"), SPELLINGS)
def test_field_notation_calls_are_checked_as_calls(
    tickets: Scratch, query: str, error: type[Exception]
) -> None:
    with _pool(tickets) as pool, tenant(1), pool.connection() as c:
        with pytest.raises(error):
            c.execute(query)
        assert c.execute("SELECT 1").fetchone() == (1,)  # nothing was sent


def _unread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classify, "_field_calls", lambda node: [])


def test_control_a_setting_hidden_in_ts_stat_breaks_the_next_tenants_writes(
    tickets: Scratch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unread(monkeypatch)
    with _pool(tickets) as pool:
        with tenant(1), pool.connection() as c:
            c.execute(READ_ONLY).fetchall()
        with (
            tenant(2),
            pool.connection() as c,
            pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
        ):
            c.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (2, 1)")
        assert pool.guard_stats.verified == 0  # the guard saw nothing


def test_control_currval_reads_the_id_the_other_tenant_drew(
    tickets: Scratch, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unread(monkeypatch)
    with _pool(tickets) as pool:
        with tenant(2), pool.connection() as c:
            drawn: Any = c.execute("SELECT nextval('app.tickets')").fetchone()
        with tenant(1), pool.connection() as c:
            seen: Any = c.execute("SELECT ('app.tickets'::regclass).currval").fetchone()
    assert seen == drawn
