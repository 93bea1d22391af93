"""The probe: every attack has a leaky and a safe fixture, run on a real server.

Fixtures live in ``cases/<CODE>_<name>/{leaky,safe}.sql`` and follow the audit's
conventions: they run as the admin in a fresh database with tenantguard installed,
``{app}`` is the runtime role, ``{owner}`` the owner role, and ``-- protect: T ...``
protects tables afterwards. ``-- install: signed`` in the leaky fixture installs
``--signed`` first (for both).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from tenantguard.admin import install, protect
from tenantguard.core.sqlbuild import InstallSpec
from tenantguard.tooling.findings import Report
from tenantguard.tooling.probe import RULES, probe_database

CASES_DIR = Path(__file__).parent / "cases"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir())


def run_case(conn: psycopg.Connection, text: str, app: str, owner: str = "") -> None:  # type: ignore[type-arg]
    text = text.replace("{app}", sql.Identifier(app).as_string(conn))
    if owner:
        text = text.replace("{owner}", sql.Identifier(owner).as_string(conn))
    conn.execute(text)
    for line in text.splitlines():
        if line.startswith("-- protect:"):
            protect(conn, line.split(":", 1)[1].split())


def test_every_attack_has_fixtures() -> None:
    assert {r.code for r in RULES if r.code < "TGP190"} == {c.split("_", 1)[0] for c in CASES}


def scope(text: str) -> list[str] | None:
    """The schemas a fixture is probed with (``-- scope: s1 s2``), else every schema."""
    for line in text.splitlines():
        if line.startswith("-- scope:"):
            return line.split(":", 1)[1].split()
    return None


def prepare_case(conn: psycopg.Connection, s, text: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    """Install ``--signed`` when the fixture asks for it, then run the fixture."""
    if "-- install: signed" in text:
        install(
            conn,
            InstallSpec(
                app_role=s.app_role,
                owner_role=s.owner_role,
                signed=True,
                key_owner_role=f"tg_keys_{s.suffix}",
            ),
        )
    run_case(conn, text, s.app_role, s.owner_role)


def probe_case(conn: psycopg.Connection, s, text: str, **kwargs: Any) -> Report:  # type: ignore[no-untyped-def,type-arg]
    return probe_database(conn, app_role=s.app_role, schemas=scope(text), **kwargs)


@pytest.mark.parametrize("case", CASES)
def test_attack_fixture(fresh, case: str) -> None:  # type: ignore[no-untyped-def]
    code = case.split("_", 1)[0]
    leaky_sql = (CASES_DIR / case / "leaky.sql").read_text()
    safe_sql = (CASES_DIR / case / "safe.sql").read_text()
    with fresh.admin() as conn:
        prepare_case(conn, fresh, leaky_sql)
        leaky = probe_case(conn, fresh, leaky_sql)
        hits = [f for f in leaky.findings if f.rule.code == code]
        assert hits, [(f.rule.code, f.message) for f in leaky.findings]
        assert all(f.evidence and f.fix_sql for f in hits)
        conn.execute(
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public; GRANT USAGE ON SCHEMA public TO PUBLIC"
        )
        run_case(conn, safe_sql, fresh.app_role, fresh.owner_role)
        safe = probe_case(conn, fresh, safe_sql)
    assert [(f.rule.code, f.object, f.message) for f in safe.findings] == []


def test_core_output_has_no_leaks(saas) -> None:  # type: ignore[no-untyped-def]
    with saas.admin() as conn:
        report = probe_database(conn, app_role=saas.app_role)
    assert [(f.rule.code, f.object, f.message) for f in report.findings] == []
    # every attack ran (app.users is empty: probed with synthetic rows; app.projects has
    # user-level policies: probed as the user who owns the victim's row)
    assert report.meta["tables_probed"] == 3 and report.meta["tables_not_probed"] == 0
    assert report.meta["attacks_not_run"] == 0
    assert report.meta["attempts"] > 50


CHECKSUM = """
SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'app') ORDER BY 1
"""


def snapshot(conn: psycopg.Connection) -> dict[str, object]:  # type: ignore[type-arg]
    """Every table's content, every sequence, role, role setting, policy and RLS flag."""
    out: dict[str, object] = {}
    for (rel,) in conn.execute(CHECKSUM).fetchall():
        q = sql.SQL(
            "SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')), count(*) FROM {} x"
        )
        out[rel] = conn.execute(q.format(sql.SQL(rel))).fetchone()
    for name, query in {
        "sequences": "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2",
        "roles": "SELECT rolname, rolsuper, rolbypassrls, rolinherit FROM pg_roles ORDER BY 1",
        "settings": "SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting ORDER BY 1, 2",
        "policies": "SELECT polrelid::regclass::text, polname, pg_get_expr(polqual, polrelid) "
        "FROM pg_policy ORDER BY 1, 2",
        "rls": "SELECT oid::regclass::text, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relkind IN ('r', 'p') ORDER BY 1",
        "prepared": "SELECT count(*) FROM pg_prepared_statements",
    }.items():
        out[name] = conn.execute(query).fetchall()
    return out


def test_probe_leaves_everything_as_it_found_it(fresh) -> None:  # type: ignore[no-untyped-def]
    """Leaky tables (every attack succeeds), an empty one (synthetic rows), serials."""
    with fresh.admin() as conn:
        for case in ("TGP101_cross_tenant_read", "TGP108_unique_key_oracle"):
            text = (
                (CASES_DIR / case / "leaky.sql")
                .read_text()
                .replace("public.t", f"public.t_{case[:6].lower()}")
            )
            run_case(conn, text, fresh.app_role)
        conn.execute(
            "CREATE TABLE public.empty (tenant_id bigint NOT NULL, id serial PRIMARY KEY, "
            "code text UNIQUE, ts timestamptz NOT NULL DEFAULT now(), n int NOT NULL)"
        )
        conn.execute(
            sql.SQL("GRANT ALL ON public.empty TO {}").format(sql.Identifier(fresh.app_role))
        )
        before = snapshot(conn)
        report = probe_database(conn, app_role=fresh.app_role)
        after = snapshot(conn)
    assert before == after
    leaked = {(f.rule.code, f.object) for f in report.findings}
    assert ("TGP101", "public.empty") in leaked and ("TGP103", "public.empty") in leaked
    assert report.meta["sequences_moved"] == []


def test_role_default_is_found_by_emulation_and_by_a_fresh_login(fresh) -> None:  # type: ignore[no-untyped-def]
    with fresh.admin() as conn:
        run_case(
            conn, (CASES_DIR / "TGP101_cross_tenant_read" / "safe.sql").read_text(), fresh.app_role
        )
        conn.execute(
            sql.SQL("ALTER ROLE {} SET app.tenant_id = '1'").format(sql.Identifier(fresh.app_role))
        )
        try:
            report = probe_database(conn, app_dsn=fresh.app_dsn)
        finally:
            conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(fresh.app_role)))
    hits = [f for f in report.findings if f.rule.code == "TGP113"]
    assert len(hits) == 2, [(f.rule.code, f.message) for f in report.findings]
    assert any("fresh login" in f.message for f in hits)
    assert any("the role's default applies" in (f.evidence or "") for f in hits)


def test_cli_formats_and_exit_codes(fresh, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.cli import main

    with fresh.admin() as conn:
        run_case(
            conn, (CASES_DIR / "TGP101_cross_tenant_read" / "leaky.sql").read_text(), fresh.app_role
        )
    runner = CliRunner()
    base = ["probe", "--dsn", fresh.admin_dsn, "--app-role", fresh.app_role]
    r = runner.invoke(main, [*base, "--format", "json"])
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert doc["tool"] == "probe" and doc["summary"]["critical"] >= 1
    assert all(f["evidence"] for f in doc["findings"])
    r = runner.invoke(main, [*base, "--format", "sarif", "--output", str(tmp_path / "p.sarif")])
    assert r.exit_code == 1 and json.loads((tmp_path / "p.sarif").read_text())["version"] == "2.1.0"
    r = runner.invoke(main, [*base, "--format", "html", "--output", str(tmp_path / "p.html")])
    assert r.exit_code == 1 and "TGP101" in (tmp_path / "p.html").read_text()
    with fresh.admin() as conn:
        conn.execute("DROP TABLE public.t")
        run_case(
            conn, (CASES_DIR / "TGP101_cross_tenant_read" / "safe.sql").read_text(), fresh.app_role
        )
    r = runner.invoke(main, base)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, [*base, "--table", "public.nosuch"])
    assert r.exit_code == 2 and "no tenant table" in r.output
    r = runner.invoke(main, [*base, "--tenant-column", "org_id"])
    assert r.exit_code == 2 and "nothing to probe" in r.output
    r = runner.invoke(main, ["probe", "--dsn", fresh.admin_dsn])
    assert r.exit_code == 2
    r = runner.invoke(
        main, ["probe", "--dsn", "postgresql://nobody@127.0.0.1:1/x", "--app-role", "a"]
    )
    assert r.exit_code == 2 and "TG105" in r.output


@pytest.mark.parametrize(
    ("kind", "a", "b"),
    [
        ("uuid", "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"),
        ("text", "acme", "globex"),
    ],
)
def test_uuid_and_text_tenants(fresh, kind: str, a: str, b: str) -> None:  # type: ignore[no-untyped-def]
    with fresh.admin() as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE public.d (tenant_id {} NOT NULL, id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
                "slug varchar(12) NOT NULL, UNIQUE (tenant_id, slug))"
            ).format(sql.SQL(kind))
        )
        conn.execute("INSERT INTO public.d (tenant_id, slug) VALUES (%s, 'x'), (%s, 'y')", (a, b))
        conn.execute("CREATE TABLE public.e (LIKE public.d)")  # empty: synthetic tenants
        conn.execute(
            sql.SQL("GRANT ALL ON public.d, public.e TO {}").format(sql.Identifier(fresh.app_role))
        )
        protect(conn, ["public.d", "public.e"])
        assert [f.rule.code for f in probe_database(conn, app_role=fresh.app_role).findings] == []
        conn.execute("ALTER TABLE public.e DISABLE ROW LEVEL SECURITY")
        leaked = {f.rule.code for f in probe_database(conn, app_role=fresh.app_role).findings}
    assert {"TGP101", "TGP103", "TGP106"} <= leaked


def test_an_admin_that_cannot_become_the_runtime_role_is_an_error(fresh) -> None:  # type: ignore[no-untyped-def]
    """Every attack runs after SET ROLE; a probe that could not would silently test nothing."""
    from tenantguard.errors import UsageError

    with fresh.admin() as conn:
        with pytest.raises(UsageError, match="does not exist"):
            probe_database(conn, app_role="no_such_role_anywhere")
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"tg_other_{fresh.suffix}"))
        )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(fresh.dbname), sql.Identifier(f"tg_other_{fresh.suffix}")
            )
        )
    with psycopg.connect(fresh.dsn_as(f"tg_other_{fresh.suffix}"), autocommit=True) as other:
        with pytest.raises(UsageError, match="GRANT"):
            probe_database(other, app_role=fresh.app_role)


def test_volatile_functions_are_called_only_when_asked(fresh) -> None:  # type: ignore[no-untyped-def]
    text = (CASES_DIR / "TGP111_function_over_tenant_table" / "leaky.sql").read_text()
    with fresh.admin() as conn:
        run_case(conn, text.replace("STABLE SECURITY DEFINER", "SECURITY DEFINER"), fresh.app_role)
        default = probe_database(conn, app_role=fresh.app_role)
        called = probe_database(conn, app_role=fresh.app_role, call_volatile=True)
    assert [(f.rule.code, str(f.level)) for f in default.findings] == [("TGP190", "low")]
    assert "VOLATILE" in default.findings[0].message
    assert [f.rule.code for f in called.findings] == ["TGP111"]
