"""Pool-model isolation, end to end, as the runtime role through TenantPool."""

from __future__ import annotations

import psycopg
import pytest

from tenantguard import NoTenantContext, TenantPool, tenant
from tenantguard.errors import InvalidTenantId, TenantContextChanged


@pytest.fixture(scope="module")
def pool(saas):  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=2, tenant_kind="bigint") as p:
        yield p


def count(conn, table: str = "app.invoices") -> int:  # type: ignore[no-untyped-def]
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_plain_connection_with_forgotten_where_leaks(saas) -> None:  # type: ignore[no-untyped-def]
    # The baseline the project exists for: the admin (a superuser) sees every tenant.
    with saas.admin() as conn:
        assert count(conn) == 2 + 4 + 6


@pytest.mark.parametrize(("tid", "expected"), [(1, 2), (2, 4), (3, 6), (99, 0)])
def test_select_sees_only_own_rows(pool, tid: int, expected: int) -> None:  # type: ignore[no-untyped-def]
    with tenant(tid), pool.connection() as conn:
        rows = conn.execute("SELECT DISTINCT tenant_id FROM app.invoices").fetchall()
        assert count(conn) == expected
        assert {r[0] for r in rows} <= {tid}


def test_insert_update_delete_stay_in_tenant(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1), pool.connection() as conn, conn.transaction(force_rollback=True):
        conn.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (1, 5)")
        updated = conn.execute("UPDATE app.invoices SET note = 'x'").rowcount
        assert updated == 3  # 2 existing + 1 new, tenant 1 only
        deleted = conn.execute("DELETE FROM app.invoices").rowcount
        assert deleted == 3
    with tenant(2), pool.connection() as conn:
        assert count(conn) == 4  # untouched


def test_foreign_tenant_insert_refused(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1), pool.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (2, 5)")
    with tenant(2), pool.connection() as conn:
        assert count(conn) == 4


def test_update_moving_rows_to_other_tenant_refused(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1), pool.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE app.invoices SET tenant_id = 2")  # no WHERE at all
    with tenant(2), pool.connection() as conn:
        assert count(conn) == 4
    with tenant(1), pool.connection() as conn:
        assert count(conn) == 2


def test_update_and_delete_cannot_reach_other_tenant_rows(pool, saas) -> None:  # type: ignore[no-untyped-def]
    with saas.admin() as admin:
        other_id = admin.execute("SELECT min(id) FROM app.invoices WHERE tenant_id = 2").fetchone()[
            0
        ]
    with tenant(1), pool.connection() as conn:
        assert (
            conn.execute("UPDATE app.invoices SET amount = 0 WHERE id = %s", (other_id,)).rowcount
            == 0
        )
        assert conn.execute("DELETE FROM app.invoices WHERE id = %s", (other_id,)).rowcount == 0
    with saas.admin() as admin:
        assert (
            admin.execute("SELECT amount FROM app.invoices WHERE id = %s", (other_id,)).fetchone()[
                0
            ]
            != 0
        )


def test_no_context_raises_before_io(pool) -> None:  # type: ignore[no-untyped-def]
    before = pool.pool.get_stats().get("requests_num", 0)
    with pytest.raises(NoTenantContext, match="tenant"), pool.connection():
        pass
    assert pool.pool.get_stats().get("requests_num", 0) == before  # never asked the pool


def test_context_lost_inside_lease_raises(pool) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.core.context import _current

    with tenant(1), pool.connection() as conn:
        token = _current.set(None)
        try:
            with pytest.raises(NoTenantContext):
                conn.execute("SELECT 1")
        finally:
            _current.reset(token)


def test_switching_tenant_under_a_lease_raises(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1), pool.connection() as conn:
        with tenant(2), pytest.raises(TenantContextChanged):
            conn.execute("SELECT count(*) FROM app.invoices")
        assert count(conn) == 2


@pytest.mark.parametrize("bad", ["abc", "1; DROP TABLE x", "", 2**63, True, 1.5, None])
def test_malformed_tenant_ids_rejected_before_io(pool, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidTenantId), tenant(bad), pool.connection():
        pass


def test_string_id_accepted_for_bigint_pool(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant("2"), pool.connection() as conn:
        assert count(conn) == 4


def test_explicit_transaction_is_bound_and_savepoints_work(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(3), pool.connection() as conn:
        with conn.transaction():
            assert count(conn) == 6
            with conn.transaction():  # savepoint: not rebound, still tenant 3
                assert count(conn) == 6
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with conn.transaction():
                    conn.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (1, 1)")
            assert count(conn) == 6  # the savepoint rolled back, the binding survived
            setting = conn.execute("SELECT current_setting('app.tenant_id')").fetchone()[0]
            assert setting == "3"
        # after COMMIT the setting is gone from the session
        raw = psycopg.Cursor(conn)
        assert raw.execute("SELECT current_setting('app.tenant_id', true)").fetchone()[0] in (
            "",
            None,
        )


def test_binding_is_transaction_scoped_never_session(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(2), pool.connection() as conn:
        conn.execute("SELECT 1")
        raw = psycopg.Cursor(conn)
        assert raw.execute("SELECT current_setting('app.tenant_id', true)").fetchone()[0] in (
            "",
            None,
        )


def test_non_autocommit_connection_binds_and_commits(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, kwargs={"autocommit": False}) as p:
        with tenant(1), p.connection() as conn:
            assert count(conn) == 2
            conn.execute("INSERT INTO app.invoices (tenant_id, amount, note) VALUES (1, 7, 'nac')")
        with tenant(1), p.connection() as conn:
            assert (
                conn.execute("SELECT count(*) FROM app.invoices WHERE note = 'nac'").fetchone()[0]
                == 1
            )
            conn.execute("DELETE FROM app.invoices WHERE note = 'nac'")


def test_executemany_is_bound(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1), pool.connection() as conn, conn.transaction(force_rollback=True):
        cur = conn.cursor()
        cur.executemany(
            "INSERT INTO app.invoices (tenant_id, amount, note) VALUES (%s, %s, 'many')",
            [(1, i) for i in range(5)],
        )
        assert (
            conn.execute("SELECT count(*) FROM app.invoices WHERE note = 'many'").fetchone()[0] == 5
        )
    with tenant(1), pool.connection() as conn:
        cur = conn.cursor()
        cur.executemany(
            "INSERT INTO app.invoices (tenant_id, amount, note) VALUES (%s, %s, 'many2')",
            [(1, i) for i in range(3)],
        )
        assert conn.execute("DELETE FROM app.invoices WHERE note = 'many2'").rowcount == 3


def test_copy_needs_a_transaction_and_is_bound_inside_one(pool) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.errors import UnsupportedOperation

    with tenant(2), pool.connection() as conn:
        with pytest.raises(UnsupportedOperation, match="transaction"):
            with conn.cursor().copy("COPY app.invoices (tenant_id, amount) FROM STDIN"):
                pass
        with conn.transaction(force_rollback=True):
            with conn.cursor().copy("COPY (SELECT tenant_id FROM app.invoices) TO STDOUT") as cp:
                rows = list(cp.rows())
            assert len(rows) == 4 and {r[0] for r in rows} == {"2"}


def test_user_level_policies(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(1, user="alice"), pool.connection() as conn:
        assert count(conn, "app.projects") == 2  # reads are tenant-wide
        assert conn.execute("UPDATE app.projects SET name = name").rowcount == 1  # only alice's
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO app.projects (tenant_id, owner_id, name) VALUES (1, 'bob', 'x')"
            )
    with tenant(1), pool.connection() as conn:  # no user: writes to projects fail closed
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no user is bound"):
            conn.execute("UPDATE app.projects SET name = name")


def test_server_cursor_is_bound(pool) -> None:  # type: ignore[no-untyped-def]
    with tenant(3), pool.connection() as conn, conn.transaction():
        with conn.cursor(name="c1") as cur:
            cur.execute("SELECT tenant_id FROM app.invoices")
            assert {r[0] for r in cur.fetchall()} == {3}


def test_cached_generic_plans_never_reuse_a_tenant(saas) -> None:  # type: ignore[no-untyped-def]
    """Same SQL text, one connection, prepared and forced onto a generic plan."""
    opts = {"options": "-c plan_cache_mode=force_generic_plan", "prepare_threshold": 0}
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, kwargs=opts) as p:
        for _round in range(3):
            for tid, expected in ((1, 2), (2, 4), (3, 6)):
                with tenant(tid), p.connection() as conn:
                    rows = conn.execute(
                        "SELECT tenant_id FROM app.invoices WHERE amount > %s", (0,)
                    ).fetchall()
                    assert len(rows) == expected and {r[0] for r in rows} == {tid}
        with tenant(1), p.connection() as conn:
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] >= 1
