"""The demo's "plain connection" cells are measurements: break the setup and they change."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

import tenantguard.demo as demo
from tenantguard.admin import protect


@pytest.fixture
def demo_db(scratch):  # type: ignore[no-untyped-def]
    """The demo's schema and data in the module's scratch database (rebuilt per test)."""
    with scratch.admin() as conn:
        conn.execute("DROP SCHEMA IF EXISTS app CASCADE")
        demo._build(conn, scratch.dbname, scratch.owner_role, scratch.app_role)
        victim = conn.execute("SELECT min(id) FROM app.invoices WHERE tenant_id = 2").fetchone()
    assert victim is not None
    return scratch, victim[0]


def _snapshot(scratch) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    with scratch.admin() as conn:
        return conn.execute(
            "SELECT tenant_id, count(*) FROM app.invoices GROUP BY 1 ORDER BY 1"
        ).fetchall()


def test_plain_cells_measure_the_unprotected_schema_and_roll_back(demo_db) -> None:  # type: ignore[no-untyped-def]
    scratch, victim = demo_db
    before = _snapshot(scratch)
    got = demo.measure_plain(scratch.app_dsn, victim)
    assert got.insert == (True, "inserted a row with globex's tenant_id 2 (rolled back)")
    assert got.move == (True, "moved all 15 rows of every tenant to globex (rolled back)")
    assert got.idor == (True, "returns globex's invoice (globex customer 1)")
    assert got.pooled[0] and "search_path = pg_catalog" in got.pooled[1]
    assert "acme's advisory lock (1 held)" in got.pooled[1]
    assert _snapshot(scratch) == before  # every write was rolled back


def test_plain_cells_change_when_the_setup_changes(demo_db) -> None:  # type: ignore[no-untyped-def]
    scratch, victim = demo_db
    with scratch.admin() as conn:
        conn.execute(
            sql.SQL("REVOKE INSERT ON app.invoices FROM {}").format(
                sql.Identifier(scratch.app_role)
            )
        )
        conn.execute("DELETE FROM app.invoices WHERE tenant_id = 3")
        conn.execute("UPDATE app.invoices SET customer = 'renamed' WHERE id = %s", (victim,))
    got = demo.measure_plain(
        scratch.app_dsn, victim, pool_reset=lambda conn: conn.execute("DISCARD ALL")
    )
    assert got.insert[0] is False and "permission denied" in got.insert[1]
    assert got.move == (True, "moved all 8 rows of every tenant to globex (rolled back)")
    assert got.idor == (True, "returns globex's invoice (renamed)")
    assert got.pooled == (False, "globex's request inherits nothing (the pool reset it)")
    # Protected, with no tenant bound, the same plain attacks are refused by the database.
    with scratch.admin() as conn:
        protect(conn, demo.TABLES)
    got = demo.measure_plain(scratch.app_dsn, victim)
    for ok, text in (got.move, got.idor):
        assert ok is False and "no tenant is bound" in text
    assert got.pooled[0] is True  # session state is not RLS's business: only the guard stops it


def test_a_plain_attack_that_fails_makes_its_claim_fail(server_dsn, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """run_demo builds its cells from measure_plain: a refused plain attack is a FAIL,
    since the demo then no longer shows what tenantguard prevents."""
    real = demo.measure_plain

    def broken(app_dsn: str, victim_row: int, **kw: object) -> demo.PlainOutcomes:
        got = real(app_dsn, victim_row)
        with psycopg.connect(app_dsn) as conn:  # the real server's answer to a bad insert
            try:
                conn.execute("INSERT INTO app.nowhere VALUES (1)")
            except psycopg.Error as exc:
                refused = (False, f"refused: {str(exc).splitlines()[0]}")
        return demo.PlainOutcomes(refused, got.move, got.idor, got.pooled)

    monkeypatch.setattr(demo, "measure_plain", broken)
    result = demo.run_demo(server_dsn)
    by_claim = {c.claim: c for c in result.claims}
    insert = by_claim["insert into another tenant is refused"]
    assert insert.plain.startswith("refused: relation") and insert.ok is False
    assert not result.ok
    assert by_claim["UPDATE ... SET tenant_id = other (no WHERE) is refused"].ok
    assert len(result.refused) == 2 and "nothing was sent" in result.refused[0]


def test_cells_are_cut_between_words() -> None:
    text = "tenantguard: no tenant is bound (setting app.tenant_id is unset or empty) " * 2
    short = demo._short(text, 70)
    assert short.endswith(" ...") and text.startswith(short[:-4])
    assert text[len(short) - 4] == " "  # the cut falls on a space, not inside a word
