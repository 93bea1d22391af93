"""The twentieth adversarial review: the nineteenth's fix checked only the last name of a
field selection, and PostgreSQL reads ``(x).f.g`` as ``g(f(x))`` and ``(x).f.*`` as every
field of ``f(x)``: ``($$...$$::text).ts_stat.word`` ran unclassified SQL text again
(default configuration). Every name of a field selection is now checked as a call with what
comes before it as the argument (control: only the last name). contrib's ``xpath_table``
builds SQL from its text arguments: code the classifier cannot see.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from conftest import Scratch
from tenantguard import TenantPool, tenant
from tenantguard.core import classify
from tenantguard.core.classify import classify_sql
from tenantguard.errors import SessionStateRefused, UnsupportedOperation

READ_ONLY = (
    "SELECT ($$SELECT pg_catalog.set_config('default_transaction_read_only', 'on', false)"
    "::tsvector$$::text).ts_stat.word"
)
SPELLINGS = [
    (READ_ONLY, SessionStateRefused),
    (READ_ONLY.replace(".word", ".*"), SessionStateRefused),
    (
        "SELECT (pid).pg_terminate_backend.pg_typeof FROM pg_stat_activity WHERE false",
        UnsupportedOperation,
    ),
    (
        "SELECT (pid).pg_terminate_backend[1] FROM pg_stat_activity WHERE false",
        UnsupportedOperation,
    ),
    ("SELECT (42::bigint).pg_advisory_lock.pg_typeof", SessionStateRefused),
    ("SELECT ('app.tickets'::regclass).currval.abs", UnsupportedOperation),
    ("SELECT (0.5::float8).setseed.pg_typeof", UnsupportedOperation),
]


@pytest.mark.parametrize(("query", "error"), SPELLINGS)
def test_every_name_of_a_field_selection_is_checked(
    tickets: Scratch,
    query: str,
    error: type[Exception],
) -> None:
    with TenantPool(tickets.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c:
            with pytest.raises(error):
                c.execute(query)
            assert c.execute("SELECT 1").fetchone() == (1,)  # nothing was sent


def test_control_only_the_last_name_checked_lets_ts_stat_text_through(
    tickets: Scratch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every = classify._field_calls
    monkeypatch.setattr(classify, "_field_calls", lambda node: every(node)[-1:])
    with TenantPool(tickets.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c:
            got: Any = c.execute(READ_ONLY).fetchall()
        assert got is not None
        with (
            tenant(2),
            pool.connection() as c,
            pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
        ):
            c.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (2, 1)")


def test_xpath_table_is_code_the_classifier_cannot_see(monkeypatch: pytest.MonkeyPatch) -> None:
    q = (
        "SELECT * FROM xpath_table('1', 'x', '(SELECT 1) x', '/a', "
        "'set_config(''statement_timeout'', ''1'', false) IS NOT NULL') AS t(k int, a text)"
    )
    assert "opaque_code" in classify_sql(q)
    monkeypatch.setattr(classify, "_OPAQUE_FUNCS", __import__("re").compile("connectby"))
    assert classify_sql(q) == frozenset()  # the control: its texts are only strings
