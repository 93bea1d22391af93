"""Tables the probe's runtime role cannot reach: neither leaks nor clean (issue 13)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from psycopg import sql

from tenantguard.admin import protect
from tenantguard.cli import main
from tenantguard.tooling.findings import Severity
from tenantguard.tooling.probe import probe_database

T = "tenant_id bigint NOT NULL, id bigint PRIMARY KEY, body text"


def _run(s, text: str) -> None:  # type: ignore[no-untyped-def]
    with s.admin() as conn:
        conn.execute(sql.SQL(text).format(app=sql.Identifier(s.app_role)))


def _setup(s) -> None:  # type: ignore[no-untyped-def]
    _run(s, f"CREATE TABLE public.ok ({T}); INSERT INTO public.ok VALUES (1, 1, 'a'), (2, 2, 'b')")
    with s.admin() as conn:
        protect(conn, ["public.ok"])
    _run(s, "GRANT SELECT, INSERT, UPDATE, DELETE ON public.ok TO {app}")
    # no privilege at all; and privileges without USAGE on the schema; neither has RLS
    _run(s, f"CREATE TABLE public.closed ({T}); INSERT INTO public.closed VALUES (1, 1), (2, 2)")
    _run(
        s, f"CREATE SCHEMA hidden; CREATE TABLE hidden.t ({T}); INSERT INTO hidden.t VALUES (1, 1)"
    )
    _run(s, "GRANT SELECT ON hidden.t TO {app}")


def test_unreachable_tables_are_reported_not_leaks_nor_clean(fresh) -> None:  # type: ignore[no-untyped-def]
    _setup(fresh)
    with fresh.admin() as conn:
        report = probe_database(conn, app_role=fresh.app_role)
    assert report.meta["tables_unreachable"] == ["hidden.t", "public.closed"]
    assert report.meta["tables_probed"] == 1
    by_table = {f.object: f for f in report.findings if f.rule.code == "TGP193"}
    assert set(by_table) == {"hidden.t", "public.closed"}
    assert all(f.level == Severity.LOW and f.fix_sql is None for f in by_table.values())
    assert "no USAGE on schema 'hidden'" in by_table["hidden.t"].message
    assert "no SELECT, INSERT, UPDATE, DELETE or TRUNCATE" in by_table["public.closed"].message
    # neither a leak nor "not probed" (TGP191, whose fix would be to protect the table)
    others = {f.rule.code for f in report.findings if f.object in by_table} - {"TGP193"}
    assert others == set()
    # the CLI: not exit 0, and the human report (on stdout) says what was not probed
    base = ["probe", "--dsn", fresh.admin_dsn, "--app-role", fresh.app_role]
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 1, r.output
    assert "TGP193" in r.stdout and "cannot reach" in r.stdout
    r = CliRunner().invoke(main, [*base, "--format", "json"])
    assert json.loads(r.stdout)["meta"]["tables_unreachable"] == ["hidden.t", "public.closed"]


def test_control_a_reachable_unprotected_table_leaks(fresh) -> None:  # type: ignore[no-untyped-def]
    _setup(fresh)
    _run(fresh, "GRANT SELECT ON public.closed TO {app}")
    with fresh.admin() as conn:
        report = probe_database(conn, app_role=fresh.app_role)
    assert report.meta["tables_unreachable"] == ["hidden.t"]
    assert "TGP101" in {f.rule.code for f in report.findings if f.object == "public.closed"}


def test_nothing_reachable_is_a_usage_error(fresh) -> None:  # type: ignore[no-untyped-def]
    _run(fresh, f"CREATE TABLE public.closed ({T})")
    r = CliRunner().invoke(main, ["probe", "--dsn", fresh.admin_dsn, "--app-role", fresh.app_role])
    assert r.exit_code == 2, r.output
    assert "can reach none of the 1 tenant table(s)" in " ".join(r.stderr.split())
