"""The migration linter: a bad and a good fixture per rule, suppressions, locations, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tenantguard.core.names import QualifiedName
from tenantguard.core.sqlbuild import (
    InstallSpec,
    ProtectSpec,
    install_statements,
    protect_statements,
    render,
)
from tenantguard.tooling.lint import RULES, lint_paths
from tenantguard.tooling.lint.rules import META

CASES_DIR = Path(__file__).parent / "cases"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir())


def codes(report) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.rule.code for f in report.findings]


def test_every_rule_has_fixtures() -> None:
    have = {c.split("_", 1)[0] for c in CASES}
    assert {r.code for r in RULES if r.code not in META} <= have


@pytest.mark.parametrize("case", CASES)
def test_rule_fixture(case: str) -> None:
    code = case.split("_", 1)[0]
    bad = lint_paths([CASES_DIR / case / "bad.sql"], app_role="app_user")
    good = lint_paths([CASES_DIR / case / "good.sql"], app_role="app_user")
    assert code in codes(bad), codes(bad)
    assert code not in codes(good), [(f.rule.code, f.message) for f in good.findings]


def test_tenantguards_own_sql_lints_clean(tmp_path: Path) -> None:
    stmts = [*install_statements(InstallSpec(app_role="app_user", owner_role="app_owner"))]
    stmts += protect_statements(ProtectSpec(QualifiedName("app", "invoices"), pk_columns=("id",)))
    f = tmp_path / "001_init.sql"
    f.write_text(
        "CREATE TABLE app.invoices (tenant_id bigint NOT NULL, id bigint PRIMARY KEY);\n"
        + "\n".join(render(s) + ";" for s in stmts)
    )
    report = lint_paths([f], app_role="app_user")
    assert [(x.rule.code, x.message) for x in report.findings] == []


def test_locations_point_at_the_statement(tmp_path: Path) -> None:
    f = tmp_path / "m.sql"
    f.write_text("SELECT 1;\n\n-- a comment\n   SET app.tenant_id = '9';\n")
    (finding,) = lint_paths([f]).findings
    assert finding.rule.code == "TGL109"
    assert finding.location is not None and (finding.location.line, finding.location.column) == (
        4,
        4,
    )


def test_locations_skip_block_comments_and_count_characters(tmp_path: Path) -> None:
    # pglast 7 places a statement before its leading comments, pglast 8 at its first token
    f = tmp_path / "m.sql"
    f.write_text("SELECT 'é';\n/* é -- ü */ /* x */\n  SET app.tenant_id = '9';\n")
    (finding,) = lint_paths([f]).findings
    assert finding.location is not None
    assert (finding.location.line, finding.location.column) == (3, 3)


def test_non_ascii_text_before_a_statement_moves_nothing(tmp_path: Path) -> None:
    # pglast's offsets count characters: a statement (and a suppression) after multi-byte
    # text is read whole and located on its own line
    f = tmp_path / "m.sql"
    f.write_text(
        "COMMENT ON SCHEMA public IS 'éééééééééééééééééééé';\n"
        "-- tenantguard: ignore TGL109 reason: one-off maintenance script, never pooled\n"
        "SET app.tenant_id = '1';\n"
        "DO $$ BEGIN PERFORM set_config('app.tenant_id', 'x', false); END $$;\n"
    )
    report = lint_paths([f])
    found = [(x.rule.code, x.location and x.location.line) for x in report.findings]
    # line 3 suppressed; the DO block read whole (cut short, it looked like dynamic SQL,
    # TGL197, and its session-level set_config went unseen)
    assert found == [("TGL109", 4)]


def test_suppressions(tmp_path: Path) -> None:
    f = tmp_path / "m.sql"
    f.write_text(
        "-- tenantguard: ignore TGL109 reason: one-off maintenance script, never pooled\n"
        "SET app.tenant_id = '1';\n"
        "SET app.tenant_id = '2';  -- tenantguard: ignore TGL109\n"
        "-- tenantguard: ignore TGL110 reason: nothing here any more\n"
        "SELECT 1;\n"
    )
    got = sorted(codes(lint_paths([f])))
    # line 2 suppressed; line 3's suppression has no reason (so it applies not, and is
    # itself reported); line 4's matches nothing.
    assert got == ["TGL109", "TGL198", "TGL199"]


def test_parse_errors_are_findings_not_crashes(tmp_path: Path) -> None:
    f = tmp_path / "broken.sql"
    f.write_text("SELECT 1;\nCREATE TABLE oops (;\n")
    (finding,) = lint_paths([f]).findings
    assert (
        finding.rule.code == "TGL100"
        and finding.location is not None
        and finding.location.line == 2
    )


def test_directories_are_read_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "002_rls.sql").write_text(
        "ALTER TABLE app.t ENABLE ROW LEVEL SECURITY; ALTER TABLE app.t FORCE ROW LEVEL SECURITY;\n"
        "CREATE POLICY p ON app.t USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint));\n"
    )
    (tmp_path / "001_table.sql").write_text("CREATE TABLE app.t (tenant_id bigint, id int);\n")
    (finding,) = lint_paths([tmp_path]).findings  # the RLS in 002 is seen...
    assert finding.rule.code == "TGL101" and str(finding.level) == "medium"  # ...but comes late
    assert "002_rls.sql" in finding.message
    (tmp_path / "003_more.sql").write_text("CREATE TABLE app.u (tenant_id bigint, id int);\n")
    got = {f.object: str(f.level) for f in lint_paths([tmp_path]).findings}
    assert got == {"app.t": "medium", "app.u": "critical"}


def test_cli(tmp_path: Path) -> None:
    from tenantguard.cli import main

    bad = CASES_DIR / "TGL109_session_level_tenant_set" / "bad.sql"
    good = CASES_DIR / "TGL109_session_level_tenant_set" / "good.sql"
    runner = CliRunner()
    r = runner.invoke(main, ["lint", str(bad), "--format", "sarif"])
    assert r.exit_code == 1
    res = json.loads(r.stdout)["runs"][0]["results"]
    assert res[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 1
    assert runner.invoke(main, ["lint", str(good)]).exit_code == 0
    assert runner.invoke(main, ["lint", str(bad), "--fail-on", "critical"]).exit_code == 0
    r = runner.invoke(main, ["lint", str(tmp_path / "missing.sql")])
    assert r.exit_code == 2
