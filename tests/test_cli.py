"""The command line: exit codes, dry runs, the demo."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner

from tenantguard.cli import main


def stdout_runner() -> CliRunner:
    """A runner whose ``stdout`` is stdout alone (click 8.1 mixes stderr in by default)."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click 8.1
    except TypeError:  # click >= 8.2 removed the argument: stdout is always apart
        return CliRunner()


def test_demo_on_given_server_passes_and_cleans_up(server_dsn: str) -> None:
    def demo_dbs() -> set[str]:
        with psycopg.connect(server_dsn) as c:
            return {
                r[0]
                for r in c.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'tenantguard_demo_%'"
                )
            }

    before = demo_dbs()
    result = CliRunner().invoke(main, ["demo", "--dsn", server_dsn, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True and len(payload["claims"]) == 8  # 6 behaviours + audit + probe
    assert all(c["ok"] for c in payload["claims"])
    assert demo_dbs() == before  # dropped its scratch database


def test_install_and_protect_dry_run_then_real(scratch) -> None:  # type: ignore[no-untyped-def]
    runner = stdout_runner()
    base = ["--dsn", scratch.admin_dsn]
    r = runner.invoke(
        main,
        [
            "install",
            *base,
            "--app-role",
            scratch.app_role,
            "--owner-role",
            scratch.owner_role,
            "--dry-run",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "CREATE OR REPLACE FUNCTION" in r.stdout
    with scratch.admin() as c:
        assert c.execute("SELECT to_regnamespace('tenantguard')").fetchone() == (None,)
    r = runner.invoke(
        main, ["install", *base, "--app-role", scratch.app_role, "--owner-role", scratch.owner_role]
    )
    assert r.exit_code == 0, r.output
    with scratch.admin() as c:
        c.execute("CREATE TABLE public.cli_t (tenant_id text NOT NULL, id int PRIMARY KEY)")
    r = runner.invoke(
        main, ["protect", "public.cli_t", *base, "--dry-run", "--grant-to", scratch.app_role]
    )
    assert r.exit_code == 0, r.output
    assert "FORCE ROW LEVEL SECURITY" in r.stdout and "GRANT" in r.stdout
    with scratch.admin() as c:
        assert c.execute(
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'public.cli_t'::regclass"
        ).fetchone() == (False,)
    r = runner.invoke(main, ["protect", "public.cli_t", *base])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["protect", "public.cli_t", *base, "--dry-run"])
    assert r.stdout.strip() == "-- nothing to do"


def test_errors_exit_2_without_traceback(scratch) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    cases = [
        ["protect", "public.x", "--dsn", "postgresql://nobody@127.0.0.1:1/db"],
        ["install", "--dsn", "not a dsn =", "--app-role", "a", "--owner-role", "b"],
        ["protect", "public.missing_table", "--dsn", scratch.admin_dsn],
        ["protect", "a.b.c", "--dsn", scratch.admin_dsn],
        ["install", "--dsn", scratch.admin_dsn, "--app-role", "same", "--owner-role", "same"],
        ["install", "--dsn", scratch.admin_dsn, "--app-role", "postgres", "--owner-role", "o"],
    ]
    for args in cases:
        r = runner.invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output and "error" in r.output, (args, r.output)


def test_demo_exits_1_when_a_claim_is_false(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tenantguard.demo as demo_mod

    def fake(dsn: str, keep: bool = False) -> demo_mod.DemoResult:
        return demo_mod.DemoResult([demo_mod.Claim("x", "leaks", "leaks too", False)], "18")

    monkeypatch.setattr(demo_mod, "run_demo", fake)
    r = CliRunner().invoke(main, ["demo", "--dsn", "postgresql://unused@127.0.0.1/x"])
    assert r.exit_code == 1 and "FAIL" in r.output
