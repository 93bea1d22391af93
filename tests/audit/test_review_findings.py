"""Severities that depend on context, usage errors for names that match nothing, and fix
SQL that stays inert whatever the catalog names contain (each on a real server)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from psycopg import sql

from tenantguard.admin import protect
from tenantguard.errors import UsageError
from tenantguard.tooling.audit import audit_database
from tenantguard.tooling.findings import Finding, Severity

T = "tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"


@pytest.fixture
def db(fresh) -> object:  # type: ignore[no-untyped-def]
    """A scratch database with tenantguard installed and one protected tenant table."""
    with fresh.admin() as conn:
        conn.execute(f"CREATE TABLE public.base ({T})")
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON public.base TO {}").format(
                sql.Identifier(fresh.app_role)
            )
        )
        protect(conn, ["public.base"])
    return fresh


def _run(s, text: str) -> None:  # type: ignore[no-untyped-def]
    names = {"app": sql.Identifier(s.app_role), "owner": sql.Identifier(s.owner_role)}
    with s.admin() as conn:
        conn.execute(sql.SQL(text).format(**names))


def _audit(s, **kwargs) -> list[Finding]:  # type: ignore[no-untyped-def]
    with s.admin() as conn:
        return audit_database(conn, app_role=s.app_role, **kwargs).findings


def _hits(findings: list[Finding], code: str) -> list[Finding]:
    return [f for f in findings if f.rule.code == code]


def _version(s) -> int:  # type: ignore[no-untyped-def]
    with s.admin() as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]


# --- CREATEROLE (TGA110 and the pool's role check) -----------------------------------------


def test_createrole_is_critical_before_16_and_high_after(db) -> None:  # type: ignore[no-untyped-def]
    _run(db, "ALTER ROLE {app} CREATEROLE")
    hits = [f for f in _hits(_audit(db), "TGA110") if "CREATEROLE" in f.message]
    want = Severity.CRITICAL if _version(db) < 160000 else Severity.HIGH
    assert [f.level for f in hits] == [want]
    assert hits[0].fix_sql == f'ALTER ROLE "{db.app_role}" NOCREATEROLE;'


def test_member_of_a_createrole_role_is_reported(db) -> None:  # type: ignore[no-untyped-def]
    _run(db, f"CREATE ROLE tg_admins_{db.suffix} NOLOGIN CREATEROLE")
    _run(db, f"GRANT tg_admins_{db.suffix} TO {{app}}")
    hits = [f for f in _hits(_audit(db), "TGA110") if "CREATEROLE" in f.message]
    assert len(hits) == 1 and f"tg_admins_{db.suffix}" in hits[0].message
    assert hits[0].fix_sql == f'REVOKE "tg_admins_{db.suffix}" FROM "{db.app_role}";'


# --- schema ownership (TGA113) ---------------------------------------------------------------


def test_schema_owned_through_a_membership_is_critical(db) -> None:  # type: ignore[no-untyped-def]
    _run(db, f"CREATE SCHEMA s; CREATE TABLE s.t ({T}); ALTER SCHEMA s OWNER TO {{owner}}")
    _run(db, "GRANT {owner} TO {app}")
    hits = _hits(_audit(db), "TGA113")
    assert [(f.object, f.level) for f in hits] == [("schema s", Severity.CRITICAL)]
    assert hits[0].fix_sql == f'REVOKE "{db.owner_role}" FROM "{db.app_role}";'


def test_owning_the_database_owns_public(db) -> None:  # type: ignore[no-untyped-def]
    if _version(db) < 150000:
        pytest.skip("public is owned by pg_database_owner from PostgreSQL 15 on")
    _run(
        db,
        sql.SQL("ALTER DATABASE {} OWNER TO {{app}}").format(sql.Identifier(db.dbname)).as_string(),
    )
    hits = _hits(_audit(db), "TGA113")
    assert [(f.object, f.level) for f in hits] == [("schema public", Severity.CRITICAL)]
    assert "pg_database_owner" in hits[0].message


def test_create_on_a_tenant_schema_is_medium(db) -> None:  # type: ignore[no-untyped-def]
    _run(db, "GRANT CREATE ON SCHEMA public TO PUBLIC")
    hits = _hits(_audit(db), "TGA113")
    assert [(f.object, f.level) for f in hits] == [("schema public", Severity.MEDIUM)]
    assert 'REVOKE CREATE ON SCHEMA "public" FROM PUBLIC;' in (hits[0].fix_sql or "")


# --- SECURITY DEFINER severities (TGA131, TGA133, TGA135) --------------------------------


def test_search_path_severity_follows_the_owner_and_execute(db) -> None:  # type: ignore[no-untyped-def]
    _run(db, "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'")
    _run(db, "CREATE FUNCTION public.g() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'")
    _run(db, "REVOKE EXECUTE ON FUNCTION public.g() FROM PUBLIC")  # owner postgres, not callable
    _run(db, "CREATE FUNCTION public.h() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'")
    _run(db, "ALTER FUNCTION public.h() OWNER TO {owner}")  # callable, owner subject to RLS
    got = {f.object: f.level for f in _hits(_audit(db), "TGA131")}
    assert got == {
        "function f()": Severity.HIGH,
        "function g()": Severity.MEDIUM,
        "function h()": Severity.MEDIUM,
    }


def test_security_definer_reading_tenant_table_is_critical(db) -> None:  # type: ignore[no-untyped-def]
    _run(
        db,
        "CREATE FUNCTION public.n() RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER "
        "SET search_path = pg_catalog AS 'SELECT count(*) FROM public.base'",
    )
    hits = _hits(_audit(db), "TGA133")
    assert [f.level for f in hits] == [Severity.CRITICAL]


def test_dynamic_for_and_return_query_execute_are_unanalysable(db) -> None:  # type: ignore[no-untyped-def]
    body = {
        "fors": "DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; RETURN; END",
        "ret": "BEGIN RETURN QUERY EXECUTE 'SELECT 1'; END",
        "static": "BEGIN RETURN QUERY SELECT 1; END",
    }
    for name, text in body.items():
        _run(
            db,
            f"CREATE FUNCTION public.{name}() RETURNS SETOF int LANGUAGE plpgsql SECURITY DEFINER "
            f"SET search_path = pg_catalog AS $${text}$$",
        )
    hits = _hits(_audit(db), "TGA135")
    assert sorted(f.object for f in hits) == ["function fors()", "function ret()"]
    assert all(f.level is Severity.HIGH and "dynamic SQL" in f.message for f in hits)


# --- foreign tables (TGA101) -------------------------------------------------------------


def test_foreign_table_critical_when_reachable_high_otherwise(db) -> None:  # type: ignore[no-untyped-def]
    _run(
        db,
        "CREATE FOREIGN DATA WRAPPER tg_fdw; CREATE SERVER tg_srv FOREIGN DATA WRAPPER tg_fdw;"
        "CREATE FOREIGN TABLE public.f1 (tenant_id bigint, x int) SERVER tg_srv;"
        "CREATE FOREIGN TABLE public.f2 (tenant_id bigint, x int) SERVER tg_srv;"
        "GRANT SELECT ON public.f1 TO {app}",
    )
    findings = _audit(db)
    got = {f.object: f.level for f in _hits(findings, "TGA101")}
    assert got == {"public.f1": Severity.CRITICAL, "public.f2": Severity.HIGH}
    # no RLS advice that cannot apply to a foreign table
    assert not [
        f for f in findings if f.object in ("public.f1", "public.f2") and f.rule.code != "TGA101"
    ]
    with db.admin() as conn:
        report = audit_database(conn, app_role=db.app_role, tables=["public.f1"])
    assert [f.object for f in _hits(report.findings, "TGA101")] == ["public.f1"]


# --- usage errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schema", "no_such_schema"], "no schema 'no_such_schema'"),
        (["--table", "nosuch.t"], "no table nosuch.t"),
        (["--tenant-column", "nosuchcol"], "no table has a column 'nosuchcol'"),
        (["--table", "tenantguard_lookup"], "has no column 'tenant_id'"),
        (
            ["--schema", "empty_schema"],
            "no table has a column 'tenant_id' in schema(s) empty_schema",
        ),
    ],
)
def test_names_that_match_nothing_are_usage_errors(db, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.cli import main

    _run(db, "CREATE TABLE IF NOT EXISTS public.tenantguard_lookup (code text PRIMARY KEY)")
    _run(db, "CREATE SCHEMA IF NOT EXISTS empty_schema")
    r = CliRunner().invoke(main, ["audit", "--dsn", db.admin_dsn, "--app-role", db.app_role, *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "hint" in r.output.lower() and "Traceback" not in r.output


def test_unknown_app_role_is_a_usage_error(db) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.cli import main

    r = CliRunner().invoke(main, ["audit", "--dsn", db.admin_dsn, "--app-role", "no_such_role"])
    assert r.exit_code == 2, r.output
    assert "role 'no_such_role' does not exist" in r.output and "--app-role" in r.output
    with db.admin() as conn, pytest.raises(UsageError, match="does not exist"):
        audit_database(conn, app_role="no_such_role")


def test_table_outside_the_named_schemas_is_a_usage_error(db) -> None:  # type: ignore[no-untyped-def]
    _run(db, "CREATE SCHEMA IF NOT EXISTS other")
    with db.admin() as conn, pytest.raises(UsageError, match="not in --schema"):
        audit_database(conn, app_role=db.app_role, schemas=["other"], tables=["public.base"])


# --- fix SQL built from catalog names ----------------------------------------------------------


EVIL = 'x"\nDROP TABLE public.base; --'


def test_names_cannot_break_out_of_fix_comments(db) -> None:  # type: ignore[no-untyped-def]
    evil = sql.Identifier(EVIL).as_string()
    _run(
        db,
        f"CREATE TABLE public.u ({T}, {evil} text, parent bigint REFERENCES public.base (id));"
        f"ALTER TABLE public.u ADD UNIQUE ({evil});"
        "ALTER TABLE public.u ENABLE ROW LEVEL SECURITY; ALTER TABLE public.u FORCE ROW LEVEL SECURITY;"
        f"CREATE POLICY {evil} ON public.u USING (tenant_id = "
        "(SELECT current_setting('app.tenant_id')::bigint) "
        "OR current_setting(E'app.x\\nDROP TABLE public.base; --', true) = 'on')",
    )
    findings = _audit(db)
    assert _hits(findings, "TGA123") and _hits(findings, "TGA150")
    for code in ("TGA123", "TGA124", "TGA150"):
        hits = _hits(findings, code)
        for f in hits:
            # (the protect SQL drops tenantguard's own policies IF EXISTS: not the name's DROP)
            lines = (f.fix_sql or "").splitlines()
            assert not any(line.startswith("DROP TABLE") for line in lines), f.fix_sql


def test_setting_reset_fix_runs(db) -> None:  # type: ignore[no-untyped-def]
    _run(db, "ALTER ROLE {app} SET app.tenant_id = '1'")
    hits = _hits(_audit(db), "TGA112")
    assert [f.fix_sql for f in hits] == [f'ALTER ROLE "{db.app_role}" RESET "app"."tenant_id";']
    with db.admin() as conn:
        conn.execute(hits[0].fix_sql or "")
    assert not _hits(_audit(db), "TGA112")
