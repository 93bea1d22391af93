"""``protect --role-scope``: the policies, the pool model on them, the audit, the guard."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from _access import APP_PASSWORD, Access, build_access, drop_tenant_roles
from tenantguard import TenantPool, tenant
from tenantguard.admin import protect
from tenantguard.admin.breakglass import grant_access
from tenantguard.admin.credentials import issue_credential
from tenantguard.tooling.audit import audit_database


@pytest.fixture(scope="module")
def db(scratch) -> Iterator[Access]:  # type: ignore[no-untyped-def]
    access = build_access(scratch)
    try:
        yield access
    finally:
        drop_tenant_roles(access)


def _tenants(conn: psycopg.Connection[tuple[object, ...]]) -> dict[int, int]:
    rows = conn.execute("SELECT tenant_id, count(*) FROM app.invoices GROUP BY 1").fetchall()
    return {int(t): int(n) for t, n in rows}  # type: ignore[call-overload]


def _policies(db: Access, table: str = "app.invoices") -> set[str]:
    with db.superuser() as su:
        rows = su.execute(
            "SELECT polname::text FROM pg_policy WHERE polrelid = %s::regclass", (table,)
        ).fetchall()
    return {str(r[0]) for r in rows}


def test_protect_role_scope_is_idempotent_and_reversible(db: Access) -> None:
    with db.admin() as admin:
        again = protect(admin, ["app.users", "app.invoices"], role_scope=True)
        assert again.statements == []
        assert {"tg_scope_update", "tg_scope_delete"} <= _policies(db)
        back = protect(admin, ["app.invoices"])  # without --role-scope: the setting only
        assert back.statements and "tg_scope_delete" not in _policies(db)
        with db.connect(db.s.app_role, APP_PASSWORD) as conn:
            conn.execute("SELECT set_config('app.tenant_id', '3', false)")
            assert _tenants(conn) == {3: 6}
        protect(admin, ["app.invoices"], role_scope=True)
        assert "tg_scope_delete" in _policies(db)


def test_the_pool_model_is_unchanged_on_role_scope_tables(db: Access) -> None:
    pool = TenantPool(
        psycopg.conninfo.make_conninfo(db.s.app_dsn, password=APP_PASSWORD),
        min_size=1,
        max_size=2,
        open=True,
    )
    try:
        for t, n in ((1, 2), (2, 4)):
            with tenant(t), pool.connection() as conn:
                assert _tenants(conn) == {t: n}  # type: ignore[arg-type]
        with db.connect(db.s.app_role, APP_PASSWORD) as raw:  # no tenant bound: refused
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no tenant is bound"):
                raw.execute("SELECT count(*) FROM app.invoices")
    finally:
        pool.close()


def test_audit_of_a_role_scope_database_is_clean(db: Access, server_dsn: str) -> None:
    support = f"tg_aud_{db.s.suffix}"
    with db.superuser() as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(support)))
    with db.admin() as admin:
        issue_credential(admin, 1, slot="aud")
        grant_access(admin, support, [2], reason="audit", ticket="A-1")
    with db.superuser() as su:
        report = audit_database(su, app_role=db.s.app_role)
        assert [f.rule.code for f in report.findings] == []
        # Control: the same audit reports the guard missing once it is gone.
        with su.transaction(force_rollback=True):
            su.execute("DROP POLICY tg_tenant_guard ON app.invoices")
            su.execute("CREATE POLICY wide ON app.invoices FOR SELECT USING (true)")
            codes = {f.rule.code for f in audit_database(su, app_role=db.s.app_role).findings}
            assert codes


def test_restrictive_policies_hold_against_a_later_permissive_policy(db: Access) -> None:
    support = f"tg_rs_{db.s.suffix}"
    with db.superuser() as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(support)))
    with db.admin() as admin:
        cred = issue_credential(admin, 1, slot="wide")
        grant_access(admin, support, [2], reason="r", ticket="t")
        grant_access(admin, support, [3], reason="r", ticket="t", write=True)  # DML privileges
    with db.superuser() as su:  # a migration adds an over-wide permissive policy
        su.execute(
            "CREATE POLICY everything ON app.invoices FOR ALL USING (true) WITH CHECK (true)"
        )
    try:
        with db.connect(cred.user, cred.password) as conn:
            assert _tenants(conn) == {1: 2}
        with db.connect(support) as conn:
            conn.execute("SELECT set_config('app.tenant_id', '2', false)")
            assert _tenants(conn) == {2: 4}
            assert conn.execute("DELETE FROM app.invoices WHERE tenant_id = 2").rowcount == 0
            assert (
                conn.execute("UPDATE app.invoices SET note = 'w' WHERE tenant_id = 2").rowcount == 0
            )
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (2, 1)")
            # Control: without the restrictive DELETE policy, the wide policy lets the
            # read-only grant delete tenant 2's rows.
            with db.superuser() as su:
                su.execute("DROP POLICY tg_scope_delete ON app.invoices")
            with conn.transaction(force_rollback=True):
                assert conn.execute("DELETE FROM app.invoices WHERE tenant_id = 2").rowcount == 4
    finally:
        with db.superuser() as su:
            su.execute("DROP POLICY IF EXISTS everything ON app.invoices")
        with db.admin() as admin:
            protect(admin, ["app.invoices"], role_scope=True)  # puts tg_scope_delete back
        assert "tg_scope_delete" in _policies(db)


def test_serial_ids_work_for_logins_and_write_grants(db: Access) -> None:
    # Inserts into a serial column need USAGE on its sequence: both paths grant it.
    with db.superuser() as su, su.transaction():
        su.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(db.s.owner_role)))
        su.execute(
            "CREATE TABLE app.notes (tenant_id bigint NOT NULL, id serial PRIMARY KEY, body text)"
        )
    support = f"tg_ser_{db.s.suffix}"
    with db.superuser() as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(support)))
    with db.admin() as admin:
        protect(admin, ["app.notes"], role_scope=True)
        cred = issue_credential(admin, 1, slot="ser")
        grant_access(admin, support, [2], reason="r", ticket="t", write=True)
    with db.connect(cred.user, cred.password) as conn:
        conn.execute("INSERT INTO app.notes (tenant_id, body) VALUES (1, 'login')")
    with db.connect(support) as conn:
        conn.execute("SELECT set_config('app.tenant_id', '2', false)")
        conn.execute("INSERT INTO app.notes (tenant_id, body) VALUES (2, 'support')")
    with db.superuser() as su:
        rows = su.execute("SELECT tenant_id, body FROM app.notes ORDER BY id").fetchall()
    assert rows == [(1, "login"), (2, "support")]
