"""The live audit: every rule has a leaky and a safe fixture, run on a real server.

Fixtures live in ``cases/<CODE>_<name>/{leaky,safe}.sql``. They run as the admin in a
fresh database with tenantguard installed; ``{app}`` / ``{owner}`` are the scratch
roles. ``-- protect: T ...`` runs ``tenantguard protect`` on T after the SQL, and
``-- after: SQL`` lines run after that; ``-- install: signed`` installs with ``--signed``
(``{keys}`` is then the key-owner role). ``-- pooler: key = value`` lines start a
PgBouncer with those settings (``-- pooler-database: {db} = ...`` adds a [databases]
entry; ``{db}`` is the scratch database) and audit with ``pooler_dsn``.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from tenantguard.admin import install, protect
from tenantguard.core.sqlbuild import InstallSpec
from tenantguard.tooling.audit import RULES, audit_database
from tenantguard.tooling.audit.rules.tga170_server_version import vulnerable

CASES_DIR = Path(__file__).parent / "cases"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir())


def run_case(conn, text: str, app: str, owner: str, keys: str = "") -> None:  # type: ignore[no-untyped-def]
    subst = {
        "{app}": sql.Identifier(app).as_string(),
        "{owner}": sql.Identifier(owner).as_string(),
        "{keys}": sql.Identifier(keys or "-").as_string(),
    }
    for k, v in subst.items():
        text = text.replace(k, v)
    conn.execute(text)
    for line in text.splitlines():
        if line.startswith("-- protect:"):
            protect(conn, line.split(":", 1)[1].split())
    for line in text.splitlines():
        if line.startswith("-- after:"):
            conn.execute(line.split(":", 1)[1])


def pooler_for(text: str, dbname: str, server_dsn: str):  # type: ignore[no-untyped-def]
    """The PgBouncer a fixture asks for (not started), or None."""
    settings: dict[str, str] = {}
    databases: list[str] = []
    for line in text.splitlines():
        if line.startswith("-- pooler:"):
            key, _, value = line.split(":", 1)[1].partition("=")
            settings[key.strip()] = value.strip()
        elif line.startswith("-- pooler-database:"):
            databases.append(line.split(":", 1)[1].strip().replace("{db}", dbname))
    if not settings and not databases:
        return None
    from audit.pgbouncer_admin import AdminPgBouncer, require_pgbouncer

    require_pgbouncer()
    params = psycopg.conninfo.conninfo_to_dict(server_dsn)
    host = str(params.get("host") or "127.0.0.1")
    port = int(params.get("port") or 5432)
    return AdminPgBouncer(host, port, settings=settings, databases=databases)


def test_every_rule_has_fixtures() -> None:
    codes = {c.split("_", 1)[0] for c in CASES}
    # TGA170 needs an old server (see below); TGA190 an admin that is not a superuser, which
    # the fixtures' admin is: tests/test_managed.py holds its leaky and safe cases.
    missing = {r.code for r in RULES} - codes - {"TGA170", "TGA190"}
    assert not missing, missing


@pytest.mark.parametrize("variant", ["leaky", "safe"])
@pytest.mark.parametrize("case", CASES)
def test_rule_fixture(server_dsn, case: str, variant: str) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_scratch

    code = case.split("_", 1)[0]
    gen = make_scratch(server_dsn)
    s = next(gen)
    text = (CASES_DIR / case / f"{variant}.sql").read_text()
    try:
        pooler = pooler_for(text, s.dbname, server_dsn)
        with s.admin() as conn, pooler or contextlib.nullcontext():
            # `-- install: signed`: install --signed (key owner tg_keys_<suffix>, `{keys}`)
            signed = "-- install: signed" in text
            keys = f"tg_keys_{s.suffix}"
            spec = InstallSpec(
                app_role=s.app_role,
                owner_role=s.owner_role,
                signed=signed,
                key_owner_role=keys if signed else None,
            )
            install(conn, spec)
            run_case(conn, text, s.app_role, s.owner_role, keys)
            report = audit_database(
                conn, app_role=s.app_role, pooler_dsn=pooler.console_dsn if pooler else None
            )
        hits = [f for f in report.findings if f.rule.code == code]
        # A finding rated other than its rule's default says why, naming the level it got.
        unexplained = [
            (f.rule.code, str(f.level), f.message)
            for f in report.findings
            if f.level != f.rule.severity and str(f.level) not in f.message.lower()
        ]
        assert not unexplained, unexplained
        if variant == "leaky":
            assert hits, f"{code} did not fire; findings: {[f.rule.code for f in report.findings]}"
            assert all(f.message and f.object for f in hits)
        else:
            assert not hits, [(f.object, f.message) for f in hits]
    finally:
        gen.close()


def test_core_output_audits_clean(saas) -> None:  # type: ignore[no-untyped-def]
    with saas.admin() as conn:
        report = audit_database(conn, app_role=saas.app_role)
    assert report.meta["tenant_tables"] == 3
    assert report.meta["setting"] == "app.tenant_id"
    assert [(f.rule.code, f.object, f.message) for f in report.findings] == []


def test_setting_inferred_from_policies_without_tenantguard(server_dsn) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_scratch

    gen = make_scratch(server_dsn)
    s = next(gen)
    try:
        with s.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(s.app_role)))
            conn.execute(
                "CREATE TABLE public.d (org_id bigint NOT NULL, x int);"
                "ALTER TABLE public.d ENABLE ROW LEVEL SECURITY;"
                "CREATE POLICY p ON public.d USING (org_id = (SELECT current_setting('my.org')::bigint))"
            )
            report = audit_database(conn, app_role=s.app_role, tenant_column="org_id")
        assert report.meta["setting"] == "my.org"
        assert "TGA102" in {f.rule.code for f in report.findings}  # not forced
    finally:
        gen.close()


@pytest.mark.parametrize(
    ("version", "affected"),
    [(150002, 2), (150008, 1), (150009, 0), (151900, 0), (170000, 1), (170001, 0), (180004, 0)],
)
def test_server_version_cves(version: int, affected: int) -> None:
    assert len(vulnerable(version)) == affected


def test_cli_exit_codes_and_formats(saas, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.cli import main

    runner = CliRunner()
    base = ["audit", "--dsn", saas.admin_dsn, "--app-role", saas.app_role]
    r = runner.invoke(main, [*base, "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["summary"]["total"] == 0
    with saas.admin() as conn:
        conn.execute(
            sql.SQL("GRANT TRUNCATE ON app.invoices TO {}").format(sql.Identifier(saas.app_role))
        )
    try:
        r = runner.invoke(main, [*base, "--format", "sarif"])
        assert r.exit_code == 1
        sarif = json.loads(r.stdout)
        assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"][0]["ruleId"] == "TGA142"
        r = runner.invoke(
            main,
            [
                *base,
                "--fail-on",
                "critical",
                "--format",
                "html",
                "--output",
                str(tmp_path / "r.html"),
            ],
        )
        assert r.exit_code == 1 and "TGA142" in (tmp_path / "r.html").read_text()
        r = runner.invoke(main, [*base, "--table", "app.users"])  # the grant is on invoices
        assert r.exit_code == 0, r.output
    finally:
        with saas.admin() as conn:
            conn.execute(
                sql.SQL("REVOKE TRUNCATE ON app.invoices FROM {}").format(
                    sql.Identifier(saas.app_role)
                )
            )
    r = runner.invoke(main, ["audit", "--dsn", saas.admin_dsn])
    assert r.exit_code == 2
    r = runner.invoke(main, ["audit", "--dsn", "postgresql://x@127.0.0.1:1/db", "--app-role", "a"])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_explicit_setting_overrides_inference(server_dsn) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_scratch

    gen = make_scratch(server_dsn)
    s = next(gen)
    try:
        with s.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(s.app_role)))
            conn.execute(
                "CREATE TABLE public.d (org_id bigint NOT NULL, x int);"
                "ALTER TABLE public.d ENABLE ROW LEVEL SECURITY;"
                "CREATE POLICY p ON public.d USING (org_id = (SELECT current_setting('my.org')::bigint));"
                "CREATE POLICY q ON public.d FOR SELECT USING (org_id = (SELECT current_setting('my.org')::bigint));"
                "CREATE POLICY r ON public.d FOR SELECT USING (org_id = (SELECT current_setting('my.other')::bigint))"
            )
            inferred = audit_database(conn, app_role=s.app_role, tenant_column="org_id")
            given = audit_database(
                conn, app_role=s.app_role, tenant_column="org_id", setting="my.other"
            )
        assert inferred.meta["setting"] == "my.org"  # the most used setting wins
        assert {f.object for f in inferred.findings if f.rule.code == "TGA123"} == {
            "policy r on public.d"
        }
        assert given.meta["setting"] == "my.other"
        assert {f.object for f in given.findings if f.rule.code == "TGA123"} == {
            "policy p on public.d",
            "policy q on public.d",
        }
    finally:
        gen.close()


def _with_options(dsn: str, options: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["options"] = options
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def test_app_dsn_fresh_session_shows_defaults(saas) -> None:  # type: ignore[no-untyped-def]
    # pg_db_role_setting is empty here: only a fresh session of the app DSN shows it.
    leaky = _with_options(saas.app_dsn, "-c app.tenant_id=1")
    with saas.admin() as conn:
        clean = audit_database(conn, app_dsn=saas.app_dsn)
        report = audit_database(conn, app_dsn=leaky)
    assert clean.meta["runtime_role"] == saas.app_role and clean.findings == []
    hits = [f for f in report.findings if f.rule.code == "TGA112"]
    assert [f.object for f in hits] == ["setting app.tenant_id"], report.findings
    assert "'1'" in hits[0].message


def test_app_dsn_server_level_default() -> None:
    """A server-level default (ALTER SYSTEM) shows only in a fresh session of the app.

    Runs on a throwaway embedded server of its own: once a server has had a custom setting,
    every new session inherits its placeholder (reading '' instead of NULL) until a restart,
    which would change what other tests see.
    """
    from conftest import build_saas, make_scratch
    from tenantguard.embedded import embedded_postgres

    def reload(su, want: str | None) -> None:  # type: ignore[no-untyped-def]
        su.execute("SELECT pg_reload_conf()")
        for _ in range(100):  # the reload is asynchronous: wait until new sessions see it
            with psycopg.connect(server, autocommit=True) as fresh:
                row = fresh.execute("SELECT current_setting('app.tenant_id', true)").fetchone()
            if (row[0] or None) == want:
                return
            time.sleep(0.05)
        raise AssertionError(f"server did not reload app.tenant_id = {want!r}")

    with embedded_postgres(prefix="tenantguard-sysdefault-", share_socket=True) as server:
        gen = make_scratch(server)
        saas = next(gen)
        try:
            build_saas(saas)
            with psycopg.connect(server, autocommit=True) as su:
                su.execute("ALTER SYSTEM SET app.tenant_id = '2'")
                reload(su, "2")
                with saas.admin() as conn:
                    by_role = audit_database(conn, app_role=saas.app_role)
                    by_dsn = audit_database(conn, app_dsn=saas.app_dsn)
        finally:
            next(gen, None)
    assert not [f for f in by_role.findings if f.rule.code == "TGA112"]  # invisible in catalogs
    hits = [f for f in by_dsn.findings if f.rule.code == "TGA112"]
    assert hits and "'2'" in hits[0].message


def test_custom_settings_come_from_tenantguard(server_dsn) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_scratch

    gen = make_scratch(server_dsn)
    s = next(gen)
    try:
        with s.admin() as conn:
            install(
                conn,
                InstallSpec(
                    app_role=s.app_role,
                    owner_role=s.owner_role,
                    setting="acme.org",
                    user_setting="acme.member",
                ),
            )
            conn.execute(
                "CREATE TABLE public.t (tenant_id bigint NOT NULL, "
                "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner_id text NOT NULL)"
            )
            protect(conn, ["public.t"], user_column="owner_id")
            # A hand-written policy on the user setting is no escape hatch (TGA123).
            conn.execute(
                "CREATE POLICY mine ON public.t AS RESTRICTIVE FOR SELECT "
                "USING (owner_id = (SELECT current_setting('acme.member', true)))"
            )
            report = audit_database(conn, app_role=s.app_role)
        assert report.meta["setting"] == "acme.org"
        assert [(f.rule.code, f.object) for f in report.findings] == []
    finally:
        gen.close()
