"""What the adversarial-review tests share: the statements and the planted binding."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tenantguard.drivers.psycopg import fast_path

ROWS = "SELECT tenant_id, amount FROM app.invoices ORDER BY amount"

# The binding the pool prepares as _tg_bind (pinned form: 8 text parameters), rewritten so
# that after binding the tenant it copies the tenant's invoices into a session setting,
# which outlives the transaction and the lease.
REPLANT_BODY = """
PREPARE _tg_bind(text, text, text, text) AS
SELECT s.a, s.b, s.c, s.d,
       pg_catalog.set_config('x.loot', COALESCE((
           SELECT pg_catalog.string_agg(i.tenant_id || ':' || i.amount, ',' ORDER BY i.amount)
           FROM app.invoices i WHERE s.a IS NOT NULL), '') || ' ' ||
           COALESCE(pg_catalog.current_setting('x.loot', true), ''), false)
FROM (SELECT pg_catalog.set_config($1, $2, true) AS a,
             pg_catalog.set_config($3, $4, true) AS b,
             CASE WHEN CURRENT_USER OPERATOR(pg_catalog.<>) SESSION_USER
                  THEN pg_catalog.set_config('role', 'none', true) END AS c,
             NULL::text AS d) s
"""
LOOT = "SELECT pg_catalog.current_setting('x.loot', true)"

# The replant targets the fast path's _tg_bind (psycopg's own _pg3_N names otherwise).
FAST_ONLY = pytest.mark.skipif(not fast_path()[0], reason="the default fast path's names")
#: Pool kwargs that keep psycopg's statement preparation on both paths (the public-API path
#: prepares nothing unless the caller sets a threshold): for attacks on prepared statements.
PSYCOPG_PREPARES = {"prepare_threshold": 5}
DEFENDED = pytest.mark.parametrize("defended", [True, False], ids=["defended", "control"])

#: Turns standard_conforming_strings off for the session, in plain sight: the tests of the
#: lexer checks take the classifier away (:func:`blind`), so it passes.
SCS_OFF_PLAIN = "SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false)"
#: With standard_conforming_strings on (how tenantguard reads SQL) everything after `'a\'` is
#: a comment; with it off, the server reads a string, then set_config of tenant 2 and a count
#: of its invoices.
MISREAD = (
    "SELECT 'a\\' --', pg_catalog.set_config('app.tenant_id', '2', true), "
    "(SELECT count(*) FROM app.invoices)"
)


def blind(pool: Any) -> None:
    """The classifier away: every statement looks clean (the layer under test is the next)."""
    pool._core.classifier.effects = lambda query, params=False: frozenset()
    pool._core.classifier.cached = lambda query: None


def leaked(loot: str | None) -> bool:
    """Tenant 2's four invoices, copied by the planted binding."""
    return loot is not None and "2:10,2:20,2:30,2:40" in loot


def loot_after_tenant2(pool: Any) -> str | None:
    """Tenant 2 makes an ordinary request; then what tenant 1 can read of the loot."""
    from tenantguard import tenant

    with tenant(2), pool.connection() as conn:
        assert {r[0] for r in conn.execute(ROWS)} == {2}
    with tenant(1), pool.connection() as conn:
        row = conn.execute(LOOT).fetchone()
    return None if row is None else row[0]


def spy(loot: list[Any]) -> Any:
    """A row factory that copies every row it makes into *loot* (set by the attacker)."""

    def factory(cur: Any) -> Any:
        def make(values: Any) -> Any:
            loot.append(tuple(values))
            return tuple(values)

        return make

    return factory


def in_thread(fn: Any) -> None:
    """Run *fn* in another thread (another tenant's worker) and wait for it."""
    t = threading.Thread(target=fn)
    t.start()
    t.join(30)
    assert not t.is_alive()


def psycopgs_own_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    """A control: psycopg's own ``_ensure_bytes`` (the caller's bytes object becomes the key
    of psycopg's process-wide query cache), in place of tenantguard's exact one."""
    from psycopg._queries import PostgresQuery

    mine = PostgresQuery.__dict__["_ensure_bytes"]
    monkeypatch.setattr(PostgresQuery, "_ensure_bytes", mine._tg_original)
