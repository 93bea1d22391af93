"""Names are printed as they are: never read as rich markup, never a crash (exit 2)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from psycopg import sql

from tenantguard.cli import main


@pytest.fixture
def odd_table(saas):  # type: ignore[no-untyped-def]
    with saas.admin() as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE app.{} (tenant_id bigint NOT NULL, id bigint PRIMARY KEY)"
            ).format(sql.Identifier("inv[bold]oices"))
        )
    yield saas
    with saas.admin() as conn:
        conn.execute(sql.SQL("DROP TABLE app.{}").format(sql.Identifier("inv[bold]oices")))


def test_protect_dry_run_prints_sql_without_markup(odd_table) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(
        main, ["protect", 'app."inv[bold]oices"', "--dsn", odd_table.admin_dsn, "--dry-run"]
    )
    assert r.exit_code == 0, r.output
    assert 'ALTER TABLE "app"."inv[bold]oices" ENABLE ROW LEVEL SECURITY;' in r.stdout


@pytest.mark.parametrize("command", ["protect", "audit", "probe"])
def test_markup_in_an_argument_is_a_clean_error(saas, command: str) -> None:  # type: ignore[no-untyped-def]
    args = {
        "protect": ["protect", "app.x[/]", "--dsn", saas.admin_dsn, "--dry-run"],
        "audit": ["audit", "--dsn", saas.admin_dsn, "--app-role", "no[/]role"],
        "probe": [
            "probe",
            "--dsn",
            saas.admin_dsn,
            "--app-role",
            saas.app_role,
            "--table",
            "app.x[/]",
        ],
    }[command]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, (r.output, r.exception)
    assert "[/]" in r.output  # the name, shown as typed
