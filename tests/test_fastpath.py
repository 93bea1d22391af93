"""The lean binding path: same guarantees as conn.pipeline(), less client CPU."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tenantguard import TenantPool, tenant
from tenantguard.drivers.psycopg import fast_path
from tenantguard.drivers.psycopg._fastpath import AVAILABLE

# What only the fast path does (cursor reuse, the prepared binding): checked where it is on;
# the pass with TENANTGUARD_FAST_PATH=0 runs the rest of this module on the public API.
FAST_ONLY = pytest.mark.skipif(
    not fast_path()[0], reason=f"tests the fast path, which is off: {fast_path()[1]}"
)


@FAST_ONLY
def test_fast_path_is_enabled_for_this_psycopg() -> None:
    assert AVAILABLE, f"psycopg {psycopg.__version__}: fast path disabled, check _fastpath.py"


@pytest.fixture(scope="module")
def pool(saas):  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as p:
        yield p


@FAST_ONLY
def test_binding_survives_deallocate_all(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1), pool.connection() as conn:
        conn.execute("SELECT 1")  # prepares the binding on the server
        assert conn._tg_binding_prepared
        psycopg.Cursor(conn).execute("DEALLOCATE ALL")  # the server forgets it
        assert conn.execute("SELECT count(*) FROM app.invoices").fetchone()[0] == 2


def test_errors_surface_and_connection_stays_usable(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(2), pool.connection() as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM app.nope")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (1, 1)")
        for _ in range(7):  # through psycopg's prepare threshold
            assert (
                conn.execute(
                    "SELECT count(*) FROM app.invoices WHERE amount > %s", (0,)
                ).fetchone()[0]
                == 4
            )
        cur = conn.execute("SELECT tenant_id, amount FROM app.invoices ORDER BY id")
        assert cur.rowcount == 4 and cur.description[0].name == "tenant_id"


def test_user_pipeline_still_binds_every_statement(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(3), pool.connection() as conn:
        with conn.pipeline():
            c1 = conn.execute("SELECT count(*) FROM app.invoices")
            c2 = conn.execute("SELECT count(*) FROM app.projects")
        assert c1.fetchone()[0] == 6 and c2.fetchone()[0] == 2


@FAST_ONLY
def test_fast_and_fallback_paths_agree(saas) -> None:  # type: ignore[no-untyped-def]
    results = {}
    for fast in (True, False):
        with TenantPool(saas.app_dsn, min_size=1, max_size=1) as p:
            with tenant(3), p.connection() as conn:
                conn._tg_fast_path = fast
                results[fast] = conn.execute(
                    "SELECT tenant_id, amount FROM app.invoices ORDER BY id"
                ).fetchall()
    assert results[True] == results[False] and len(results[True]) == 6


@FAST_ONLY
def test_a_statement_leaves_the_cursor_as_psycopg_s_own_execute_does(saas) -> None:  # type: ignore[no-untyped-def]
    """The fast path starts a statement as psycopg's Cursor._start_query does on an autocommit
    connection (without its generators): the cursor's state after each statement, and when
    it keeps its Transformer (the same query object again) or makes a new one (another
    object, even of equal text), are psycopg's own."""
    q = "SELECT x, x * 2 AS y FROM pg_catalog.generate_series(1, %s) AS x"
    equal_text = "".join(list(q))
    assert equal_text == q and equal_text is not q

    def trace(cur: Any) -> list[Any]:
        seen, first_tx = [], None
        # q seven times: psycopg prepares it from the sixth (prepare_threshold 5)
        for query, n in [(q, 3), (q, 2)] * 3 + [(q, 1), (equal_text, 4), ("SELECT 1", None)]:
            cur.execute(query, None if n is None else (n,))
            first_tx = first_tx or cur._tx
            seen.append(
                (
                    cur._tx is first_tx,
                    cur.rowcount,
                    cur.rownumber,
                    cur.statusmessage,
                    [c.name for c in cur.description or ()],
                    cur._iresult,
                    len(cur._results),
                    cur._execmany_returning,
                    cur._query is None,
                    cur._last_query is query,
                    cur.fetchall(),
                )
            )
        return seen

    with psycopg.connect(saas.app_dsn, autocommit=True) as plain:
        psycopgs = trace(plain.cursor())
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as p:
        with tenant(1), p.connection() as conn:
            ours = trace(conn.cursor())
    assert ours == psycopgs
    assert [s[0] for s in ours] == [True] * 7 + [False, False]
