"""Every fix the linter prints, appended to the migration, clears its finding.

For each bad fixture: lint, append each finding's ``fix_sql`` (those with a statement, not
only comments) to the migration, lint again: the findings whose fix was appended are gone,
and nothing is left that has a runnable fix.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lint.test_lint import CASES, CASES_DIR
from tenantguard.tooling.lint import lint_paths


def _runnable(fix: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in fix.splitlines())


@pytest.mark.parametrize("case", CASES)
def test_every_lint_fix_clears_its_finding(case: str, tmp_path: Path) -> None:
    text = (CASES_DIR / case / "bad.sql").read_text()
    before = lint_paths([CASES_DIR / case / "bad.sql"], app_role="app_user").findings
    fixes = [f for f in before if f.fix_sql and _runnable(f.fix_sql)]
    migration = tmp_path / "bad.sql"
    migration.write_text(text.rstrip() + "\n" + "\n".join(f.fix_sql or "" for f in fixes) + "\n")
    after = lint_paths([migration], app_role="app_user").findings
    unparsed = [f.message for f in after if f.rule.code == "TGL100"]
    assert not unparsed, f"the fixes do not parse as SQL: {unparsed}"
    applied = {(f.rule.code, f.object) for f in fixes}
    left = [(f.rule.code, f.object, f.message) for f in after if (f.rule.code, f.object) in applied]
    assert not left, f"still reported after their fix was appended: {left}"
    new = [(f.rule.code, f.object, f.fix_sql) for f in after if f.fix_sql and _runnable(f.fix_sql)]
    assert not new, f"reported after every fix was appended, with a runnable fix: {new}"


@pytest.mark.parametrize("case", CASES)
def test_every_lint_fix_runs_on_the_database_the_migration_makes(  # type: ignore[no-untyped-def]
    server_dsn, case: str, tmp_path: Path
) -> None:
    """The migration run on a scratch database (tenantguard installed, schema ``app``), then
    every fix as pasted: each runs. Fixtures that are fragments (they alter tables they do
    not create) or create cluster-wide roles are skipped, saying so."""
    import psycopg

    from conftest import make_scratch
    from tenantguard.admin import install
    from tenantguard.core.sqlbuild import InstallSpec

    text = (CASES_DIR / case / "bad.sql").read_text()
    if "CREATE ROLE" in text.upper():
        pytest.skip("the fixture creates a role for the whole cluster")
    gen = make_scratch(server_dsn)
    s = next(gen)
    try:
        text = re.sub(r"\bapp_user\b", s.app_role, text)
        migration = tmp_path / "bad.sql"
        migration.write_text(text)
        with s.admin() as conn:
            install(conn, InstallSpec(app_role=s.app_role, owner_role=s.owner_role))
            conn.execute("CREATE SCHEMA app")
            try:
                conn.execute(text)
            except psycopg.Error as exc:
                pytest.skip(f"the fixture is a fragment, not a migration that runs: {exc}")
            findings = lint_paths([migration], app_role=s.app_role).findings
            for f in findings:
                if f.fix_sql and _runnable(f.fix_sql):
                    try:
                        conn.execute(f.fix_sql)
                    except psycopg.Error as exc:
                        pytest.fail(f"{f.rule.code} fix for {f.object} failed: {exc}\n{f.fix_sql}")
    finally:
        gen.close()
