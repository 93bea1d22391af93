"""TGA171 and ``--pooler-dsn``: a real PgBouncer on a free loopback port.

Run once per binary (the ``pgbouncer_binary`` fixture: Debian's 1.18 and
``$TENANTGUARD_PGBOUNCER``, 1.24.1 in CI), since the console's output differs across
versions. The audit reads PgBouncer's admin console only. These tests never skip in CI.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from audit.pgbouncer_admin import AdminPgBouncer
from tenantguard.tooling.audit import audit_database
from tenantguard.tooling.audit.rules.tga171_pooler_mode import _resets

pytestmark = pytest.mark.pgbouncer


def bouncer(saas, binary: str, **settings: str) -> AdminPgBouncer:  # type: ignore[no-untyped-def]
    databases = [settings.pop("database")] if "database" in settings else []
    params = psycopg.conninfo.conninfo_to_dict(saas.admin_dsn)
    return AdminPgBouncer(
        str(params.get("host") or "127.0.0.1"),
        int(params.get("port") or 5432),
        settings=settings,
        databases=[d.replace("{db}", saas.dbname) for d in databases],
        binary=binary,
    )


def pooler_findings(saas, binary: str, **settings: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with bouncer(saas, binary, **settings) as pgb, saas.admin() as conn:
        report = audit_database(conn, app_role=saas.app_role, pooler_dsn=pgb.console_dsn)
    assert report.meta["pooler"].startswith("PgBouncer")
    others = [f.rule.code for f in report.findings if f.rule.code != "TGA171"]
    assert others == []  # the core's own output stays clean
    return [(str(f.level), f.message) for f in report.findings]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"pool_mode": "transaction"}, []),
        ({"pool_mode": "session", "server_reset_query": "DISCARD ALL"}, []),
        ({"pool_mode": "session", "server_reset_query": "RESET ALL"}, []),
        ({"pool_mode": "session"}, [("high", "= session with server_reset_query 'empty'")]),
        (
            {"pool_mode": "session", "server_reset_query": "SELECT 1"},
            [("high", "server_reset_query 'SELECT 1'")],
        ),
        ({"pool_mode": "statement"}, [("high", "pool_mode (database")]),
        (  # transaction globally, statement for this database's entry
            {
                "pool_mode": "transaction",
                "database": "{db} = host=127.0.0.1 port=5432 dbname={db} pool_mode=statement",
            },
            [("high", "= statement")],
        ),
        (  # every client of the entry logs in as a superuser
            {
                "pool_mode": "transaction",
                "database": "{db} = host=127.0.0.1 port=5432 dbname={db} user=postgres",
            },
            [("critical", "logs in to the server as 'postgres': it is a superuser")],
        ),
    ],
)
def test_pooler_modes(  # type: ignore[no-untyped-def]
    saas, pgbouncer_binary: str, settings: dict[str, str], expected: list[tuple[str, str]]
) -> None:
    got = pooler_findings(saas, pgbouncer_binary, **settings)
    assert len(got) == len(expected), got
    for (level, message), (want_level, fragment) in zip(got, expected, strict=True):
        assert level == want_level and fragment in message, (level, message)


def test_reset_query_is_parsed() -> None:
    assert _resets("DISCARD ALL", "app.tenant_id")
    assert _resets("RESET ALL", "app.tenant_id")
    assert _resets("RESET app.tenant_id", "app.tenant_id")
    assert not _resets("RESET search_path", "app.tenant_id")
    assert not _resets("DISCARD PLANS", "app.tenant_id")
    assert not _resets("", "app.tenant_id")
    assert not _resets("not sql at all", "app.tenant_id")


def test_cli_pooler_dsn(saas, pgbouncer_binary: str) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.cli import main

    runner = CliRunner()
    base = ["audit", "--dsn", saas.admin_dsn, "--app-role", saas.app_role, "--format", "json"]
    with bouncer(saas, pgbouncer_binary, pool_mode="statement") as pgb:
        r = runner.invoke(main, [*base, "--pooler-dsn", pgb.console_dsn])
        assert r.exit_code == 1, r.output
        doc = json.loads(r.stdout)
        assert [f["rule"] for f in doc["findings"]] == ["TGA171"]
        # Any dbname in the DSN: the console is always the pgbouncer database.
        other = pgb.console_dsn.replace("dbname=pgbouncer", "dbname=app")
        r = runner.invoke(main, [*base, "--pooler-dsn", other, "--fail-on", "critical"])
        assert r.exit_code == 0, r.output
    with bouncer(saas, pgbouncer_binary, pool_mode="transaction") as pgb:
        r = runner.invoke(main, [*base, "--pooler-dsn", pgb.console_dsn])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["summary"]["total"] == 0
    # Gone, and not a PgBouncer at all: usage/connection errors, exit 2, no traceback.
    r = runner.invoke(main, [*base, "--pooler-dsn", pgb.console_dsn])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = runner.invoke(main, [*base, "--pooler-dsn", saas.admin_dsn])
    assert r.exit_code == 2 and "Traceback" not in r.output
