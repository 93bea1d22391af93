"""The sixth adversarial review: what is fixed so far (the rest: README, "Open").

A named cursor inherits ``copy()`` and ``stream()`` from psycopg's plain cursor; they sent
their text unclassified and unbound (a planted binding on one's own lease; another lease's
rows from a kept reference). On a tenant connection they are refused before sending.
"""

from __future__ import annotations

import psycopg
import pytest

from tenantguard import TenantPool, tenant
from tenantguard.errors import UnsupportedOperation

SESSION_SET = "SELECT pg_catalog.set_config('x.r6', 'planted', false)"


@pytest.mark.parametrize("method", ["copy", "stream"])
def test_a_named_cursors_copy_and_stream_are_refused(saas, method) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn, conn.transaction():
            cur = conn.cursor("r6")
            with pytest.raises(UnsupportedOperation, match="nothing was sent"):
                getattr(cur, method)(SESSION_SET)
        with tenant(1), pool.connection() as conn:
            row = conn.execute("SELECT pg_catalog.current_setting('x.r6', true)").fetchone()
    assert row in ((None,), ("",))


def test_control_psycopgs_named_cursor_stream_sends_its_text(saas) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(saas.app_dsn) as conn:  # the same login, a plain connection
        cur = conn.cursor("r6")
        list(cur.stream(SESSION_SET))  # psycopg's inherited stream(): sent as it is
        row = conn.execute("SELECT pg_catalog.current_setting('x.r6', true)").fetchone()
    assert row == ("planted",)
