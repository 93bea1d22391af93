"""The pytest plugin, run for real: pytester subprocesses against a leaky and a safe database.

Each inner run is a fresh ``python -m pytest`` that loads the plugin through its installed
``pytest11`` entry point, exactly as a user's suite would; DSNs are passed explicitly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest
from psycopg import sql

from tenantguard.admin import install
from tenantguard.core.sqlbuild import InstallSpec
from tenantguard.pytest_plugin import NotIsolated, TenantguardWarning, assert_isolated
from tenantguard.tooling.audit import RULES as AUDIT_RULES
from tenantguard.tooling.findings import Finding, Report, Rule, Severity

pytest_plugins = ["pytester"]

LEAKY_SQL = """
CREATE TABLE public.notes (tenant_id bigint NOT NULL, id bigint PRIMARY KEY, body text);
GRANT SELECT, INSERT ON public.notes TO {app};
"""


def _leaky(conn, app_role: str) -> None:  # type: ignore[no-untyped-def]
    conn.execute(LEAKY_SQL.format(app=sql.Identifier(app_role).as_string(conn)))


@pytest.fixture(scope="module")
def leaky(server_dsn: str) -> Iterator[object]:
    """tenantguard installed, one tenant table without RLS: TGA101 (critical), TGA150
    (medium: unique id without tenant_id), TGA160 (low: no tenant-leading index)."""
    from conftest import make_scratch

    gen = make_scratch(server_dsn)
    s = next(gen)
    with s.admin() as conn:
        install(conn, InstallSpec(app_role=s.app_role, owner_role=s.owner_role))
        _leaky(conn, s.app_role)
    yield s
    gen.close()


def _args(db, *extra: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        "-p",
        "no:cacheprovider",
        f"--tenantguard-dsn={db.admin_dsn}",
        f"--tenantguard-app-role={db.app_role}",
        "--tenantguard-tool=audit",
        *extra,
    ]


def test_entry_point_is_registered() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert eps.get("tenantguard") == "tenantguard.pytest_plugin"


def test_inert_unless_asked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok():\n    assert True\n")
    # a DSN alone (here: one nothing listens on) does not make the plugin connect or collect
    r = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tenantguard-dsn=postgresql://nobody@127.0.0.1:9/none", "-v"
    )
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["plugins: *tenantguard-*", "*collected 1 item"])  # loaded, no checks
    assert "tenantguard:" not in r.stdout.str()  # no report header either
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    for flag in ("--tenantguard ", "--tenantguard-dsn", "--tenantguard-fail-on", "tenantguard_dsn"):
        assert flag in help_text
    help_text = pytester.runpytest_subprocess("-p", "no:tenantguard", "--help").stdout.str()
    assert "--tenantguard" not in help_text  # the entry point's name turns it off


def test_collection_does_not_touch_the_database(pytester: pytest.Pytester) -> None:
    r = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--tenantguard",
        "--tenantguard-dsn=postgresql://nobody@127.0.0.1:9/none",
        "--co",
        "-q",
    )
    assert r.ret == pytest.ExitCode.OK
    r.stdout.fnmatch_lines(
        [
            "*tenantguard::audit::TGA101-rls-disabled",
            "*tenantguard::audit::other-rules",
            "*tenantguard::probe::TGP101-cross-tenant-read",
            "*tenantguard::probe::other-rules",
        ]
    )


def test_options_accept_lists_and_severity_names() -> None:
    from tenantguard.pytest_plugin import TenantguardOptions

    opts = TenantguardOptions(schemas=["app"], tables=["app.a"], fail_on="high")  # type: ignore[arg-type]
    assert (opts.schemas, opts.tables, opts.fail_on) == (("app",), ("app.a",), Severity.HIGH)
    hash(opts)  # part of the session cache key


def test_checks_fail_per_rule_on_a_leaky_database(pytester: pytest.Pytester, leaky) -> None:  # type: ignore[no-untyped-def]
    pytester.makepyfile("def test_app():\n    assert True\n")
    r = pytester.runpytest_subprocess(*_args(leaky, "--tenantguard", "-v"))
    # fail-on defaults to low, as for `tenantguard audit`: all three leaky rules fail
    r.assert_outcomes(passed=1 + len(AUDIT_RULES) + 1 - 3, failed=3)
    out = r.stdout.str()
    assert "tenantguard: isolation checks (audit), fail on low and above" in out
    r.stdout.fnmatch_lines(
        [
            "*test_app PASSED*",
            "*::tenantguard::audit::TGA101-rls-disabled FAILED*",
            "*::tenantguard::audit::TGA102-rls-not-forced PASSED*",
            "*::tenantguard::audit::other-rules PASSED*",
        ]
    )
    # the failure is the findings, readable, not a traceback through the plugin
    r.stdout.fnmatch_lines(
        [
            "*tenantguard rule TGA101: 1 finding(s) at or above low in *",
            "[[]CRITICAL[]] TGA101 rls-disabled: public.notes",
            "    row level security is disabled and the runtime role *",
            "    why: *",
            "    fix:",
            '      ALTER TABLE "public"."notes" ENABLE ROW LEVEL SECURITY;',
            '      ALTER TABLE "public"."notes" FORCE ROW LEVEL SECURITY;',
        ]
    )
    assert "def check" not in out and "pytest_plugin.py" not in out
    r.stdout.fnmatch_lines(["FAILED *TGA101-rls-disabled*", "FAILED *TGA150*", "FAILED *TGA160*"])


def test_fail_on_threshold_and_warnings_below_it(pytester: pytest.Pytester, leaky) -> None:  # type: ignore[no-untyped-def]
    r = pytester.runpytest_subprocess(*_args(leaky, "--tenantguard", "--tenantguard-fail-on=high"))
    r.assert_outcomes(passed=len(AUDIT_RULES), failed=1, warnings=2)
    r.stdout.fnmatch_lines(
        [
            "*TenantguardWarning: tenantguard audit: 1 finding(s) below high*",
            "*TenantguardWarning: tenantguard audit: 1 finding(s) below high*",
        ]
    )
    assert "[MEDIUM] TGA150" in r.stdout.str() and "[LOW] TGA160" in r.stdout.str()
    # -k / -m select among the checks; deselected rules do not run
    r = pytester.runpytest_subprocess(*_args(leaky, "--tenantguard", "-k", "TGA101 or TGA102"))
    r.assert_outcomes(passed=1, failed=1)
    r = pytester.runpytest_subprocess(*_args(leaky, "--tenantguard", "-m", "not tenantguard"))
    r.assert_outcomes()


def test_checks_pass_on_the_core_output(pytester: pytest.Pytester, saas) -> None:  # type: ignore[no-untyped-def]
    r = pytester.runpytest_subprocess(*_args(saas, "--tenantguard"))
    r.assert_outcomes(passed=len(AUDIT_RULES) + 1)


def test_ini_configuration(pytester: pytest.Pytester, leaky) -> None:  # type: ignore[no-untyped-def]
    pytester.makeini(
        f"""
        [pytest]
        tenantguard_checks = true
        tenantguard_dsn = {leaky.admin_dsn}
        tenantguard_app_role = {leaky.app_role}
        tenantguard_tools = audit
        tenantguard_fail_on = medium
        tenantguard_schemas = public
        """
    )
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    r.assert_outcomes(passed=len(AUDIT_RULES) - 1, failed=2, warnings=1)
    # the command line wins over the ini file
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tenantguard-fail-on=critical")
    r.assert_outcomes(passed=len(AUDIT_RULES), failed=1, warnings=2)


def test_app_dsn_instead_of_app_role(pytester: pytest.Pytester, leaky) -> None:  # type: ignore[no-untyped-def]
    args = [
        "-p",
        "no:cacheprovider",
        "--tenantguard",
        f"--tenantguard-dsn={leaky.admin_dsn}",
        f"--tenantguard-app-dsn={leaky.app_dsn}",
        "--tenantguard-tool=audit",
        "--tenantguard-fail-on=critical",
        "-k",
        "TGA101",
    ]
    r = pytester.runpytest_subprocess(*args)
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines([f"*runtime role '{leaky.app_role}'*"])


CONFTEST_WITH_MIGRATIONS = '''
import pytest, psycopg

import tenantguard.tooling.audit as audit_module

ADMIN_DSN = {admin_dsn!r}
CALLS = []

_real = audit_module.audit_database
def _counting(*args, **kwargs):
    CALLS.append(1)
    return _real(*args, **kwargs)
audit_module.audit_database = _counting


@pytest.fixture(scope="session")
def migrated_db():
    """The user's own fixture: builds the schema (here, a leaky one)."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute({leaky_sql!r})
    return ADMIN_DSN


@pytest.fixture(scope="session")
def tenantguard_dsn(migrated_db):
    return migrated_db


@pytest.fixture(scope="session")
def tenantguard_app_role():
    return {app_role!r}


def pytest_sessionfinish(session):
    with open("audit_calls.txt", "w") as f:
        f.write(str(len(CALLS)))
'''


def test_fixture_override_points_the_checks_at_the_users_database(
    pytester: pytest.Pytester, server_dsn: str
) -> None:
    from conftest import make_scratch

    gen = make_scratch(server_dsn)
    s = next(gen)
    try:
        with s.admin() as conn:
            install(conn, InstallSpec(app_role=s.app_role, owner_role=s.owner_role))
        # the conftest lives in tests/, not the rootdir: its fixtures still apply to the checks
        tests = pytester.mkdir("tests")
        (tests / "conftest.py").write_text(
            CONFTEST_WITH_MIGRATIONS.format(
                admin_dsn=s.admin_dsn,
                app_role=s.app_role,
                leaky_sql=LEAKY_SQL.format(app=sql.Identifier(s.app_role).as_string()),
            )
        )
        (tests / "test_app.py").write_text("def test_app(migrated_db):\n    assert migrated_db\n")
        r = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--tenantguard", "--tenantguard-tool=audit", "-v"
        )
        r.assert_outcomes(passed=1 + len(AUDIT_RULES) + 1 - 3, failed=3)
        r.stdout.fnmatch_lines(["tests::tenantguard::audit::TGA101-rls-disabled FAILED*"])
        # one audit for the whole session, shared by every rule's item
        assert (pytester.path / "audit_calls.txt").read_text() == "1"
    finally:
        gen.close()


HAND_WRITTEN = """
from tenantguard.pytest_plugin import assert_isolated


def test_no_high_findings(tenantguard_audit):
    assert_isolated(tenantguard_audit(), fail_on="high")


def test_only_app_invoices(tenantguard_audit):
    report = tenantguard_audit(tables=["app.invoices"])
    assert report.meta["tenant_tables"] == 1
    assert_isolated(report)


def test_runner(tenantguard):
    tenantguard.assert_isolated(tenantguard.audit(schemas=["app"]))
"""


def test_fixtures_and_assert_isolated_in_hand_written_tests(
    pytester: pytest.Pytester,
    saas,  # type: ignore[no-untyped-def]
    leaky,  # type: ignore[no-untyped-def]
) -> None:
    pytester.makepyfile(HAND_WRITTEN)
    r = pytester.runpytest_subprocess(*_args(saas))
    r.assert_outcomes(passed=3)
    pytester.makepyfile(
        """
        from tenantguard.pytest_plugin import assert_isolated

        def test_no_high_findings(tenantguard_audit):
            assert_isolated(tenantguard_audit(), fail_on="high")
        """
    )
    r = pytester.runpytest_subprocess(*_args(leaky))
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(
        [
            "E * tenantguard audit: 1 finding(s) at or above high in *",
            "E *[[]CRITICAL[]] TGA101 rls-disabled: public.notes",
            "E *fix:",
        ]
    )
    assert "raise NotIsolated(" not in r.stdout.str()


def test_configuration_errors_are_readable(pytester: pytest.Pytester, leaky) -> None:  # type: ignore[no-untyped-def]
    pytester.makepyfile("def test_ok(tenantguard_audit):\n    tenantguard_audit()\n")
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    r.assert_outcomes(errors=1)
    r.stdout.fnmatch_lines(["*tenantguard: no database to check; pass --tenantguard-dsn*"])
    r = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--tenantguard-dsn={leaky.admin_dsn}"
    )
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*tenantguard audit: no runtime role to check*"])
    r = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--tenantguard-dsn=postgresql://nobody@127.0.0.1:9/none",
        "--tenantguard-app-role=app",
    )
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*tenantguard audit: *127.0.0.1*"])
    r = pytester.runpytest_subprocess("--tenantguard", "--tenantguard-fail-on=severe")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*tenantguard_fail_on: unknown severity 'severe'*"])


RULE = Rule("TGA999", "demo-rule", Severity.HIGH, "audit", "demo", description="it leaks")


def _finding(obj: str, severity: Severity | None = None) -> Finding:
    return Finding(
        RULE,
        obj,
        f"{obj} leaks",
        fix_sql="ALTER TABLE t ENABLE ROW LEVEL SECURITY;\nALTER TABLE t FORCE ROW LEVEL SECURITY;",
        severity=severity,
        evidence="SELECT count(*) FROM t -- as tenant 1: 3 rows of tenant 2",
    )


def test_assert_isolated_message_and_threshold() -> None:
    report = Report("audit", "dbname=x", [_finding("app.a"), _finding("app.b", Severity.LOW)])
    with pytest.raises(NotIsolated) as exc, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert_isolated(report, fail_on="medium")
    assert isinstance(exc.value, AssertionError)
    assert [f.object for f in exc.value.findings] == ["app.a"]
    assert str(exc.value) == (
        "tenantguard audit: 1 finding(s) at or above medium in dbname=x\n\n"
        "[HIGH] TGA999 demo-rule: app.a\n"
        "    app.a leaks\n"
        "    why: it leaks\n"
        "    evidence (the SQL that proved it):\n"
        "      SELECT count(*) FROM t -- as tenant 1: 3 rows of tenant 2\n"
        "    fix:\n"
        "      ALTER TABLE t ENABLE ROW LEVEL SECURITY;\n"
        "      ALTER TABLE t FORCE ROW LEVEL SECURITY;"
    )
    assert [w.category for w in seen] == [TenantguardWarning]
    assert "[LOW] TGA999 demo-rule: app.b" in str(seen[0].message)
    assert_isolated(Report("audit", "x"))  # nothing: no error
    assert_isolated(report, rule="TGA000")  # another rule's findings do not count


def test_pyproject_configuration_as_in_the_readme(pytester: pytest.Pytester, leaky) -> None:  # type: ignore[no-untyped-def]
    pytester.makepyprojecttoml(
        f"""
        [tool.pytest.ini_options]
        tenantguard_checks = true
        tenantguard_dsn = "{leaky.admin_dsn}"
        tenantguard_app_role = "{leaky.app_role}"
        tenantguard_fail_on = "medium"
        tenantguard_schemas = ["public"]
        tenantguard_tools = ["audit"]
        """
    )
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    r.assert_outcomes(passed=len(AUDIT_RULES) - 1, failed=2, warnings=1)


def test_a_missing_tool_collects_nothing_and_its_fixture_skips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tenantguard import pytest_plugin

    monkeypatch.setitem(pytest_plugin._MODULES, "probe", "tenantguard.tooling.no_such_tool")
    assert pytest_plugin._tool_module("probe") is None
    assert pytest_plugin._static_rules("probe") is None
    assert pytest_plugin._static_rules("audit") == list(AUDIT_RULES)
    target = pytest_plugin._Target("dbname=x", "app", None, pytest_plugin.TenantguardOptions())
    with pytest.raises(pytest.skip.Exception, match="tenantguard probe is not available"):
        pytest_plugin._execute("probe", target)  # before any connection attempt


# --------------------------------------------------------------------------- probe


def test_probe_checks_fail_on_a_leaky_database_with_evidence(
    pytester: pytest.Pytester, leaky
) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.tooling.probe import RULES as PROBE_RULES

    r = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--tenantguard",  # both tools by default
        f"--tenantguard-dsn={leaky.admin_dsn}",
        f"--tenantguard-app-role={leaky.app_role}",
        "-v",
    )
    out = r.stdout.str()
    assert "tenantguard: isolation checks (audit, probe)" in out
    outcomes = r.parseoutcomes()
    assert outcomes["passed"] + outcomes["failed"] == len(AUDIT_RULES) + len(PROBE_RULES) + 2
    r.stdout.fnmatch_lines(
        [
            "*::tenantguard::probe::TGP101-cross-tenant-read FAILED*",
            "*::tenantguard::probe::TGP104-move-row-to-other-tenant PASSED*",
            "*::tenantguard::probe::TGP113-no-tenant-context FAILED*",
            "*::tenantguard::probe::other-rules PASSED*",
        ]
    )
    r.stdout.fnmatch_lines(
        [
            "*tenantguard probe TGP113*",
            "tenantguard rule TGP113: 1 finding(s) at or above low in *",
            "[[]CRITICAL[]] TGP113 no-tenant-context: public.notes",
            "    * row(s) visible with no tenant bound",
            "    why: *",
            "    evidence (the SQL that proved it):",
            f'      SET ROLE "{leaky.app_role}"; BEGIN; /[*] no tenant bound [*]/ SELECT count(*) FROM "public"."notes"; ROLLBACK;',
            "    fix:",
            '      ALTER TABLE "public"."notes" ENABLE ROW LEVEL SECURITY;',
        ]
    )


def test_probe_checks_pass_on_the_core_output(pytester: pytest.Pytester, saas) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.tooling.probe import RULES as PROBE_RULES

    r = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--tenantguard",
        "--tenantguard-tool=probe",
        f"--tenantguard-dsn={saas.admin_dsn}",
        f"--tenantguard-app-role={saas.app_role}",
    )
    r.assert_outcomes(passed=len(PROBE_RULES) + 1)


PROBE_BY_HAND = """
from tenantguard.pytest_plugin import assert_isolated


def test_probe(tenantguard_probe):
    report = tenantguard_probe(tables=["{table}"])
    assert report.tool == "probe"
    assert_isolated(report, fail_on="critical")
"""


def test_probe_fixture_in_hand_written_tests(pytester: pytest.Pytester, saas, leaky) -> None:  # type: ignore[no-untyped-def]
    pytester.makepyfile(PROBE_BY_HAND.format(table="app.invoices"))
    r = pytester.runpytest_subprocess(*_args(saas))
    r.assert_outcomes(passed=1)
    pytester.makepyfile(PROBE_BY_HAND.format(table="public.notes"))
    r = pytester.runpytest_subprocess(*_args(leaky))
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(
        [
            "E * tenantguard probe: * finding(s) at or above critical in *",
            "E *[[]CRITICAL[]] TGP101 cross-tenant-read: public.notes",
            "E *evidence (the SQL that proved it):",
            "E *SET ROLE *",
        ]
    )
