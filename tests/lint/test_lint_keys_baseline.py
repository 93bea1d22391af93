"""Tenant keys per table (mapped, inferred, the root) and baselines, through API and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tenantguard.cli import main
from tenantguard.errors import UsageError
from tenantguard.tooling.lint import lint_paths

# The Citus multi-tenant tutorial's shape: the tenant is a company, keyed company_id.
CITUS = """
CREATE TABLE companies (id bigserial PRIMARY KEY, name text NOT NULL);
CREATE TABLE campaigns (
  id bigserial, company_id bigint REFERENCES companies (id), name text NOT NULL,
  PRIMARY KEY (company_id, id));
CREATE TABLE ads (
  id bigserial, company_id bigint, campaign_id bigint, name text NOT NULL,
  PRIMARY KEY (company_id, id),
  FOREIGN KEY (company_id, campaign_id) REFERENCES campaigns (company_id, id));
CREATE TABLE countries (code text PRIMARY KEY);
"""

GUARD = """
ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {t} FORCE ROW LEVEL SECURITY;
CREATE POLICY tg ON {t} AS RESTRICTIVE FOR ALL
  USING ({c} = (SELECT tenantguard.current_tenant()::bigint))
  WITH CHECK ({c} = (SELECT tenantguard.current_tenant()::bigint));
CREATE POLICY acc ON {t} FOR ALL
  USING ({c} = (SELECT tenantguard.current_tenant()::bigint))
  WITH CHECK ({c} = (SELECT tenantguard.current_tenant()::bigint));
"""


def write(tmp_path: Path, text: str, name: str = "001.sql") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def found(report) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return sorted((f.rule.code, f.object) for f in report.findings)


def test_no_table_with_a_tenant_key_is_an_error_not_a_clean_result(tmp_path: Path) -> None:
    f = write(tmp_path, CITUS)
    with pytest.raises(UsageError, match="none of the 4 tables") as info:
        lint_paths([f])
    assert "--tenant-column public.companies=id" in (info.value.hint or "")
    r = CliRunner().invoke(main, ["lint", str(f)])
    assert r.exit_code == 2 and "no findings" not in r.output


def test_files_that_create_no_table_are_still_linted(tmp_path: Path) -> None:
    f = write(tmp_path, "SET app.tenant_id = '1';\n")  # a statement-level rule needs no table
    assert found(lint_paths([f])) == [("TGL109", "app.tenant_id")]


def test_mapping_the_root_infers_the_tables_that_reference_it(tmp_path: Path) -> None:
    f = write(tmp_path, CITUS)
    report = lint_paths([f], tenant_columns={"public.companies": "id"})
    keys = report.meta["tenant_keys"]
    assert {t: (k["column"], k["source"]) for t, k in keys.items()} == {
        "public.companies": ("id", "mapped"),
        "public.campaigns": ("company_id", "inferred"),
        "public.ads": ("company_id", "inferred"),  # through the composite key to campaigns
    }
    assert "references public.campaigns.company_id" in keys["public.ads"]["reason"]
    assert report.meta["shared_tables"] == ["public.countries"]
    assert found(report) == [
        ("TGL101", "public.ads"),
        ("TGL101", "public.campaigns"),
        ("TGL101", "public.companies"),
    ]
    # The fix is the SQL for the table's own key, runnable as pasted after install.
    fix = next(x.fix_sql for x in report.findings if x.object == "public.campaigns")
    assert fix is not None and '"company_id" = (SELECT' in fix and "tenantguard install" in fix


def test_the_default_column_finds_the_root_it_references(tmp_path: Path) -> None:
    f = write(tmp_path, CITUS)
    report = lint_paths([f], tenant_column="company_id")
    assert report.meta["tenant_keys"]["public.companies"]["source"] == "root"
    assert ("TGL101", "public.companies") in found(report)


def test_policies_are_judged_by_the_tables_own_key(tmp_path: Path) -> None:
    text = CITUS + "".join(
        GUARD.format(t=t, c=c)
        for t, c in (("companies", "id"), ("campaigns", "company_id"), ("ads", "company_id"))
    )
    f = write(tmp_path, text)
    assert found(lint_paths([f], tenant_columns={"companies": "id"})) == []
    # Control: the same policies judged by a wrong key are not pinned.
    wrong = lint_paths([f], tenant_columns={"companies": "id", "campaigns": "name"})
    assert ("TGL114", "policy acc on public.campaigns") in found(wrong)


def test_two_candidate_keys_are_reported_not_guessed(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        "CREATE TABLE tenants (id bigint PRIMARY KEY);\n"
        "CREATE TABLE invoices (tenant_id bigint REFERENCES tenants, id bigint);\n"
        "CREATE TABLE transfers (from_tenant bigint REFERENCES tenants (id),"
        " to_tenant bigint REFERENCES tenants (id));\n",
    )
    report = lint_paths([f])
    (amb,) = [x for x in report.findings if x.rule.code == "TGL196"]
    assert amb.object == "public.transfers" and "from_tenant" in amb.message
    assert "to_tenant" in amb.message
    fixed = lint_paths([f], tenant_columns={"public.transfers": "from_tenant"})
    assert "TGL196" not in {x.rule.code for x in fixed.findings}


def test_a_mapping_to_a_missing_column_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path, CITUS)
    with pytest.raises(UsageError, match="has no column compnay_id"):
        lint_paths([f], tenant_columns={"public.campaigns": "compnay_id"})
    r = CliRunner().invoke(main, ["lint", str(f), "--tenant-column", "campaigns=compnay_id"])
    assert r.exit_code == 2


def test_cli_mappings_and_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(tmp_path, CITUS)
    runner = CliRunner()
    r = runner.invoke(main, ["lint", str(f), "--tenant-column", "public.companies=id"])
    assert r.exit_code == 1, r.output
    assert "inferred tenant key public.campaigns.company_id" in " ".join(r.stderr.split())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.tenantguard.tenant-columns]\n"public.companies" = "id"\n'
    )
    r = runner.invoke(main, ["lint", str(f), "--format", "json"])
    assert r.exit_code == 1, r.output
    keys = json.loads(r.stdout)["meta"]["tenant_keys"]
    assert keys["public.ads"]["column"] == "company_id"
    r = runner.invoke(main, ["lint", str(f), "--config", str(tmp_path / "pyproject.toml")])
    assert r.exit_code == 1, r.output
    other = tmp_path / "other.toml"
    other.write_text('tenant-column = "company_id"\n')
    r = runner.invoke(main, ["lint", str(f), "--config", str(other), "--format", "json"])
    assert json.loads(r.stdout)["meta"]["tenant_keys"]["public.companies"]["source"] == "root"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "pyproject.toml").write_text('[project]\nname = "y"\n')
    r = runner.invoke(
        main, ["lint", str(f), "--config", str(tmp_path / "empty" / "pyproject.toml")]
    )
    assert r.exit_code == 2 and "no tool.tenantguard section" in " ".join(r.stderr.split())
    (tmp_path / "tenantguard.toml").write_text('tenant-colum = "x"\n')  # a typo
    r = runner.invoke(main, ["lint", str(f)])
    assert r.exit_code == 2 and "tenant-colum" in r.stderr


# ---------------------------------------------------------------- baselines

HISTORY = (
    "CREATE TABLE app.invoices (tenant_id bigint NOT NULL, id bigint);\n"
    "SET app.tenant_id = '1';\n"
    "SET app.tenant_id = '1';\n"  # the same finding twice: counted, not merged
)


def test_baseline_hides_recorded_findings_across_line_shifts(tmp_path: Path) -> None:
    f = write(tmp_path, HISTORY)
    base = tmp_path / "baseline.json"
    recorded = lint_paths([f], write_baseline=base)
    assert recorded.findings == [] and recorded.meta["baseline"]["matched"] == 3
    entries = json.loads(base.read_text())["findings"]
    assert sorted(e["rule"] for e in entries) == ["TGL101", "TGL109", "TGL109"]
    # Lines shift (a comment and blank lines on top, layout changed): still known.
    f.write_text("-- history\n\n\n" + HISTORY.replace("bigint NOT NULL", "bigint\n   NOT NULL"))
    assert lint_paths([f], baseline=base).findings == []
    # A new finding is reported; so is a third copy of a recorded one.
    f.write_text(HISTORY + "SET app.tenant_id = '1';\nCREATE TABLE app.x (tenant_id int);\n")
    assert found(lint_paths([f], baseline=base)) == [
        ("TGL101", "app.x"),
        ("TGL109", "app.tenant_id"),
    ]
    # Changing a recorded statement makes it new (and its entry stale).
    f.write_text(HISTORY.replace("SET app.tenant_id = '1';\n", "SET app.tenant_id = '2';\n", 1))
    got = found(lint_paths([f], baseline=base))
    assert got == [("TGL109", "app.tenant_id"), ("TGL195", "app.tenant_id")]


def test_fixed_findings_leave_stale_entries(tmp_path: Path) -> None:
    f = write(tmp_path, HISTORY)
    base = tmp_path / "baseline.json"
    lint_paths([f], write_baseline=base)
    f.write_text(HISTORY.replace("SET app.tenant_id = '1';\n", "", 1))
    (stale,) = lint_paths([f], baseline=base).findings
    assert stale.rule.code == "TGL195" and "TGL109" in stale.message
    assert stale.level == 1  # low: --fail-on medium lets CI pass until the file is rewritten


def test_what_could_not_be_checked_is_never_baselined(tmp_path: Path) -> None:
    f = write(tmp_path, "CREATE TABLE oops (;\n")
    base = tmp_path / "baseline.json"
    report = lint_paths([f], write_baseline=base)
    assert [x.rule.code for x in report.findings] == ["TGL100"]
    assert json.loads(base.read_text())["findings"] == []


def test_baseline_cli(tmp_path: Path) -> None:
    f = write(tmp_path, HISTORY)
    base = tmp_path / "b.json"
    runner = CliRunner()
    r = runner.invoke(main, ["lint", str(f), "--write-baseline", str(base)])
    assert r.exit_code == 0, r.output
    assert "3 known finding(s) not shown" in " ".join(r.stderr.split())
    assert runner.invoke(main, ["lint", str(f), "--baseline", str(base)]).exit_code == 0
    f.write_text(HISTORY + "CREATE TABLE app.y (tenant_id int);\n")
    r = runner.invoke(main, ["lint", str(f), "--baseline", str(base), "--format", "json"])
    assert r.exit_code == 1
    assert [x["object"] for x in json.loads(r.stdout)["findings"]] == ["app.y"]
    r = runner.invoke(main, ["lint", str(f), "--baseline", str(tmp_path / "none.json")])
    assert r.exit_code == 2 and "--write-baseline" in r.stderr
    (tmp_path / "bad.json").write_text("{}")
    assert (
        runner.invoke(main, ["lint", str(f), "--baseline", str(tmp_path / "bad.json")]).exit_code
        == 2
    )
    r = runner.invoke(
        main, ["lint", str(f), "--baseline", str(base), "--write-baseline", str(base)]
    )
    assert r.exit_code == 2


# ---------------------------------------------------------------- one severity per defect

ENABLE = "ALTER TABLE app.t ENABLE ROW LEVEL SECURITY;\n"
FORCE = "ALTER TABLE app.t FORCE ROW LEVEL SECURITY;\n"
POLICY = (
    "CREATE POLICY p ON app.t USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint));\n"
)
T = "CREATE TABLE app.t (tenant_id bigint NOT NULL, id bigint);\n"


@pytest.mark.parametrize(
    ("text", "code", "audit"),
    [
        (T + FORCE + POLICY, "TGL101", "TGA101"),  # no ENABLE: every row for a forgotten WHERE
        (T + ENABLE + POLICY, "TGL101", "TGA102"),  # no FORCE: only the owner bypasses
        (T + ENABLE + FORCE, "TGL101", "TGA103"),  # no policy: deny-all, broken not exposed
        (T + "ALTER TABLE app.t DISABLE ROW LEVEL SECURITY;\n", "TGL102", "TGA101"),
        (T + "ALTER TABLE app.t NO FORCE ROW LEVEL SECURITY;\n", "TGL102", "TGA102"),
        (
            T + ENABLE + FORCE + "CREATE POLICY p ON app.t FOR SELECT USING (is_public);\n",
            "TGL114",
            "TGA124",
        ),
    ],
)
def test_lint_rates_a_defect_as_the_audit_does(
    tmp_path: Path, text: str, code: str, audit: str
) -> None:
    from tenantguard.tooling.audit.rules import RULES as AUDIT_RULES

    expected = {r.code: r.severity for r in AUDIT_RULES}[audit]
    levels = [x.level for x in lint_paths([write(tmp_path, text)]).findings if x.rule.code == code]
    assert levels == [expected], (code, levels, audit, expected)


def test_every_shared_defect_has_the_audits_severity() -> None:
    from tenantguard.tooling.audit.rules import RULES as AUDIT_RULES
    from tenantguard.tooling.lint import RULES
    from tenantguard.tooling.lint.severity import SAME_DEFECT

    audit = {r.code: r.severity for r in AUDIT_RULES}
    lint = {r.code: r.severity for r in RULES}
    for code, audit_codes in SAME_DEFECT.items():
        assert audit_codes[0] in audit, audit_codes  # the audit rule exists
        # a rule's default is the worst case; TGL101/102 lower it per finding (tested above)
        assert lint[code] == max(audit[a] for a in audit_codes), code


def test_rls_turned_off_and_on_again_is_high(tmp_path: Path) -> None:
    text = (
        T
        + ENABLE
        + FORCE
        + POLICY
        + "ALTER TABLE app.t DISABLE ROW LEVEL SECURITY;\nUPDATE app.t SET id = id;\n"
        + ENABLE
    )
    (weak,) = [x for x in lint_paths([write(tmp_path, text)]).findings if x.rule.code == "TGL102"]
    assert str(weak.level) == "high" and "turned back on later" in weak.message
