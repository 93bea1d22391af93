"""Twenty-third review: a pipeline hid a lexer change from the per-statement check.

PostgreSQL (14 and later) sends ParameterStatus with ReadyForQuery, which in a pipeline
comes only at the Sync. Inside ``conn.pipeline()``, a statement that turned
standard_conforming_strings off has already changed how the server reads the next
statement, while libpq still reports ``on``: the check before each statement read the
stale value and let a misread statement through (tenant 1's lease read tenant 2's invoice
count). Now a statement queued in a pipeline must have SQL text that every setting reads
alike (ASCII, no backslash): anything else is refused before it is sent.

As in ``tests/test_attacks_lexer.py``, the classifier (which refuses the hidden
``set_config`` of the first statement) is taken away: the test is about the layer that
must hold without it. Each test runs with the defence and as a control without it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from attack_payloads import DEFENDED, MISREAD, SCS_OFF_PLAIN, blind
from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.core import session
from tenantguard.errors import UnsupportedOperation


def _control(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "lexer_neutral", lambda text: True)


@DEFENDED
@pytest.mark.parametrize("mode", ["refuse", "reset"])
def test_a_lexer_change_earlier_in_the_same_pipeline(
    saas: Any, monkeypatch: pytest.MonkeyPatch, mode: str, defended: bool
) -> None:
    if not defended:
        _control(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state=mode) as pool:
        blind(pool)
        with tenant(1), pool.connection() as conn:
            if defended:
                with pytest.raises(UnsupportedOperation, match="pipeline"), conn.pipeline():
                    conn.execute(SCS_OFF_PLAIN)
                    conn.execute(MISREAD)
            else:
                with conn.pipeline():
                    conn.execute(SCS_OFF_PLAIN)
                    leaked = conn.execute(MISREAD).fetchone()
                assert leaked is not None and leaked[2] == 4  # tenant 2's invoices
        with tenant(1), pool.connection() as conn:  # and the next lease reads as it should
            assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)
            assert conn.execute("SELECT count(*) FROM app.invoices").fetchone() == (2,)


@DEFENDED
def test_the_async_pool_too(saas: Any, monkeypatch: pytest.MonkeyPatch, defended: bool) -> None:
    if not defended:
        _control(monkeypatch)

    async def run() -> object:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            blind(pool)
            async with pool.connection(tenant_id=1) as conn, conn.pipeline():
                await conn.execute(SCS_OFF_PLAIN)
                cur = await conn.execute(MISREAD)
                return await cur.fetchone()

    if defended:
        with pytest.raises(UnsupportedOperation, match="pipeline"):
            asyncio.run(run())
    else:
        leaked = asyncio.run(run())
        assert isinstance(leaked, tuple) and leaked[2] == 4


def test_outside_a_pipeline_the_check_before_each_statement_holds(saas: Any) -> None:
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        blind(pool)
        with tenant(1), pool.connection() as conn:
            conn.execute(SCS_OFF_PLAIN)
            with pytest.raises(UnsupportedOperation, match="standard_conforming_strings"):
                conn.execute(MISREAD)


def test_what_a_pipeline_still_sends(saas: Any) -> None:
    """Parameters carry any value; text without backslashes or non-ASCII passes."""
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            with conn.pipeline():
                a = conn.execute("SELECT %s::text, %s::text", ("a\\b", "Zoë"))
                b = conn.execute("SELECT count(*) FROM app.invoices")
            assert a.fetchone() == ("a\\b", "Zoë") and b.fetchone() == (2,)
            with pytest.raises(UnsupportedOperation, match="pipeline"), conn.pipeline():
                conn.execute("SELECT 'Zoë'")
            assert conn.execute("SELECT 'Zoë', E'a\\\\b'").fetchone() == ("Zoë", "a\\b")


def test_executemany_screens_each_later_set_alike(saas: Any) -> None:
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            cur = conn.cursor()
            cur.executemany("SELECT %s::int", [(1,), (2,)])  # plain text: fine
            with pytest.raises(UnsupportedOperation, match="pipeline"):
                cur.executemany("SELECT %s::int, 'é'", [(1,), (2,)])
