"""install / protect / the role guard, against a real server."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tenantguard import TenantPool, UnsafeRoleError
from tenantguard.admin import install, protect
from tenantguard.core.sqlbuild import InstallSpec
from tenantguard.errors import MissingTenantColumn, NotInstalledError, TableNotFoundError


def test_install_creates_roles_and_is_idempotent(scratch) -> None:  # type: ignore[no-untyped-def]
    spec = InstallSpec(app_role=scratch.app_role, owner_role=scratch.owner_role)
    with scratch.admin() as conn:
        first = install(conn, spec)
        assert set(first.created_roles) == {scratch.app_role, scratch.owner_role}
        second = install(conn, spec)
        assert second.created_roles == []
        app = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s",
            (scratch.app_role,),
        ).fetchone()
        owner = conn.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (scratch.owner_role,)
        ).fetchone()
        assert app == (True, False, False) and owner == (False,)
        vol = conn.execute(
            "SELECT provolatile FROM pg_proc WHERE oid = 'tenantguard.current_tenant()'::regprocedure"
        ).fetchone()
        assert vol == ("s",)  # STABLE, never IMMUTABLE


@pytest.mark.parametrize("value", [None, "", "garbage"])
def test_helper_fails_closed(scratch, value) -> None:  # type: ignore[no-untyped-def]
    with scratch.admin() as conn:
        install(conn, InstallSpec(app_role=scratch.app_role, owner_role=scratch.owner_role))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS public.fc (tenant_id bigint NOT NULL, id int PRIMARY KEY)"
        )
        conn.execute("INSERT INTO public.fc VALUES (1, 1), (2, 2) ON CONFLICT DO NOTHING")
        protect(conn, ["public.fc"])
        conn.execute(
            sql.SQL("GRANT SELECT ON public.fc TO {}").format(sql.Identifier(scratch.app_role))
        )
    with scratch.app() as conn, conn.transaction():
        if value is not None:
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (value,))
        error = (
            psycopg.errors.InvalidTextRepresentation
            if value == "garbage"
            else psycopg.errors.InsufficientPrivilege
        )
        with pytest.raises(error):
            conn.execute("SELECT * FROM public.fc").fetchall()


def test_protect_is_idempotent_and_dry_run_changes_nothing(scratch) -> None:  # type: ignore[no-untyped-def]
    with scratch.admin() as conn:
        install(conn, InstallSpec(app_role=scratch.app_role, owner_role=scratch.owner_role))
        conn.execute(
            "CREATE TABLE public.idem (tenant_id uuid NOT NULL, id bigint PRIMARY KEY, "
            "parent bigint REFERENCES public.idem(id))"
        )
        dry = protect(conn, ["public.idem"], dry_run=True)
        assert any("FORCE ROW LEVEL SECURITY" in s for s in dry.statements)
        assert conn.execute(
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'public.idem'::regclass"
        ).fetchone() == (False,)
        assert conn.execute(
            "SELECT count(*) FROM pg_policy WHERE polrelid = 'public.idem'::regclass"
        ).fetchone() == (0,)
        assert any("foreign key" in w for w in dry.warnings)
        first = protect(conn, ["public.idem"])
        assert len(first.statements) >= 6
        second = protect(conn, ["public.idem"])
        assert second.statements == []
        row = conn.execute(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'public.idem'::regclass"
        ).fetchone()
        assert row == (True, True)
        pols = dict(
            conn.execute(
                "SELECT polname, polpermissive FROM pg_policy WHERE polrelid = 'public.idem'::regclass"
            ).fetchall()
        )
        assert pols == {"tg_tenant_guard": False, "tg_tenant_access": True}
        quals = conn.execute(
            "SELECT qual, with_check FROM pg_policies WHERE tablename = 'idem'"
        ).fetchall()
        assert all(q and c and "uuid" in q for q, c in quals)
        idx = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'idem' AND indexname LIKE '%%tg_idx'"
        ).fetchone()
        assert idx is not None and "(tenant_id, id)" in idx[0]
        # A policy someone altered by hand is put back.
        conn.execute("ALTER POLICY tg_tenant_access ON public.idem USING (true)")
        conn.execute("COMMENT ON POLICY tg_tenant_access ON public.idem IS NULL")
        fixed = protect(conn, ["public.idem"])
        assert any("tg_tenant_access" in s for s in fixed.statements)


def test_restrictive_guard_survives_a_later_permissive_policy(saas) -> None:  # type: ignore[no-untyped-def]
    with saas.admin() as conn:
        conn.execute("CREATE POLICY oops_everyone ON app.invoices FOR SELECT USING (true)")
    try:
        with TenantPool(saas.app_dsn, min_size=1, max_size=1, tenant_kind="bigint") as pool:
            from tenantguard import tenant

            with tenant(1), pool.connection() as c:
                assert c.execute("SELECT count(*) FROM app.invoices").fetchone()[0] == 2
    finally:
        with saas.admin() as conn:
            conn.execute("DROP POLICY oops_everyone ON app.invoices")


def test_protect_errors(scratch) -> None:  # type: ignore[no-untyped-def]
    with scratch.admin() as conn:
        conn.execute("DROP SCHEMA IF EXISTS tenantguard CASCADE")
        with pytest.raises(NotInstalledError):
            protect(conn, ["public.idem"])
        install(conn, InstallSpec(app_role=scratch.app_role, owner_role=scratch.owner_role))
        with pytest.raises(TableNotFoundError):
            protect(conn, ["public.nope"])
        conn.execute("CREATE TABLE IF NOT EXISTS public.nocol (id int)")
        with pytest.raises(MissingTenantColumn):
            protect(conn, ["public.nocol"])


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        ("ALTER ROLE {app} SUPERUSER", "superuser"),
        ("ALTER ROLE {app} BYPASSRLS", "BYPASSRLS"),
        ("ALTER ROLE {app} CREATEROLE", "CREATEROLE"),
        ("ALTER TABLE app.invoices OWNER TO {app}", "owns tenant tables"),
        ("GRANT {owner} TO {app}", "owns tenant tables"),
        ("ALTER ROLE {app} SET app.tenant_id = '1'", "persistent role-level default"),
    ],
)
def test_unsafe_roles_are_refused(saas, setup: str, problem: str) -> None:  # type: ignore[no-untyped-def]
    undo = {
        "ALTER ROLE {app} SUPERUSER": "ALTER ROLE {app} NOSUPERUSER",
        "ALTER ROLE {app} BYPASSRLS": "ALTER ROLE {app} NOBYPASSRLS",
        "ALTER ROLE {app} CREATEROLE": "ALTER ROLE {app} NOCREATEROLE",
        "ALTER TABLE app.invoices OWNER TO {app}": "ALTER TABLE app.invoices OWNER TO {owner}",
        "GRANT {owner} TO {app}": "REVOKE {owner} FROM {app}",
        "ALTER ROLE {app} SET app.tenant_id = '1'": "ALTER ROLE {app} RESET app.tenant_id",
    }[setup]
    names = {"app": sql.Identifier(saas.app_role), "owner": sql.Identifier(saas.owner_role)}
    with saas.admin() as conn:
        conn.execute(sql.SQL(setup).format(**names))
    try:
        with pytest.raises(UnsafeRoleError, match=problem) as info:
            TenantPool(saas.app_dsn, min_size=1, max_size=1, tenant_kind="bigint")
        assert info.value.fixes  # says how to fix it
        if "CREATEROLE" in setup:
            assert "NOCREATEROLE" in (info.value.hint or "")
        with saas.admin() as conn, pytest.raises(UnsafeRoleError, match=problem):
            install(conn, InstallSpec(app_role=saas.app_role, owner_role=saas.owner_role))
    finally:
        with saas.admin() as conn:
            conn.execute(sql.SQL(undo).format(**names))
    TenantPool(saas.app_dsn, min_size=1, max_size=1, tenant_kind="bigint").close()  # safe again


def test_unreachable_server_is_a_clear_error() -> None:
    from tenantguard.errors import ConnectionFailed

    with pytest.raises(ConnectionFailed, match="cannot connect"):
        TenantPool("postgresql://nobody@127.0.0.1:1/db", min_size=1)


def test_setting_mismatch_with_helper_is_refused(saas) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="app.other"):
        TenantPool(saas.app_dsn, setting="app.other", min_size=1)


def test_pool_works_on_a_database_tenantguard_did_not_install(server_dsn) -> None:  # type: ignore[no-untyped-def]
    """Own policies, own setting, no tenantguard schema: the pool still binds per transaction."""
    from conftest import make_scratch
    from tenantguard import tenant

    gen = make_scratch(server_dsn)
    s = next(gen)
    try:
        with s.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(s.app_role)))
            conn.execute("CREATE TABLE public.docs (org text NOT NULL, body text)")
            conn.execute("ALTER TABLE public.docs ENABLE ROW LEVEL SECURITY")
            conn.execute("CREATE POLICY p ON public.docs USING (org = current_setting('my.org'))")
            conn.execute("INSERT INTO public.docs VALUES ('a', 'x'), ('b', 'y')")
            conn.execute(
                sql.SQL("GRANT SELECT ON public.docs TO {}").format(sql.Identifier(s.app_role))
            )
        # Every database grants TEMPORARY to PUBLIC: refused until that is revoked.
        with pytest.raises(UnsafeRoleError, match="temporary objects"):
            TenantPool(s.app_dsn, setting="my.org", tenant_column="org", min_size=1)
        with s.admin() as conn:
            conn.execute(
                sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                    sql.Identifier(s.dbname)
                )
            )
        with TenantPool(s.app_dsn, setting="my.org", tenant_column="org", min_size=1) as pool:
            with tenant("b"), pool.connection() as c:
                assert c.execute("SELECT body FROM public.docs").fetchall() == [("y",)]
    finally:
        gen.close()
