"""pytest plugin: prove tenant isolation of your test database in your own CI.

Registered as the ``tenantguard`` ``pytest11`` entry point, so installing tenantguard makes
it available (``-p no:tenantguard`` turns it off). It is inert until asked: loading it adds
options, fixtures and a marker, and touches no database.

* ``pytest --tenantguard`` (or ini ``tenantguard_checks = true``) adds one test item per audit
  rule and per probe rule, ``<dir>::tenantguard::audit::TGA101-rls-disabled``. Each passes when
  its rule found nothing at or above ``--tenantguard-fail-on`` and fails with every finding of
  that rule otherwise. The rule catalogue is static, so the items (and their ids) exist at
  collection time, before any fixture has built the database; the audit and the probe each run
  once per session, when the first item of that tool runs.
* Fixtures for hand-written tests: ``tenantguard_audit()`` / ``tenantguard_probe()`` run the
  tool now and return its :class:`~tenantguard.tooling.findings.Report`;
  :func:`assert_isolated` turns a report into one readable ``AssertionError``.
* Where the database comes from: the fixtures ``tenantguard_dsn``, ``tenantguard_app_role``,
  ``tenantguard_app_dsn`` and ``tenantguard_options`` read the options; override them in a
  ``conftest.py`` to point the checks at the database your own fixture built.

The probe (``tenantguard.tooling.probe``) is imported only when a probe runs.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg
import pytest

from tenantguard.errors import first_line
from tenantguard.tooling.findings import Finding, Report, Rule, Severity

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr
    from _pytest.nodes import Node

__all__ = [
    "NotIsolated",
    "Tenantguard",
    "TenantguardOptions",
    "TenantguardWarning",
    "assert_isolated",
    "format_findings",
]

ToolName = Literal["audit", "probe"]
TOOLS: tuple[ToolName, ...] = ("audit", "probe")
_MODULES = {"audit": "tenantguard.tooling.audit", "probe": "tenantguard.tooling.probe"}
_FUNCTIONS = {"audit": "audit_database", "probe": "probe_database"}
OTHER_RULES = "other-rules"


class NotIsolated(AssertionError):
    """Raised by :func:`assert_isolated`: findings at or above the threshold."""

    def __init__(self, message: str, findings: Sequence[Finding]) -> None:
        super().__init__(message)
        self.findings = list(findings)


class TenantguardWarning(pytest.PytestWarning):
    """Findings below the fail-on threshold (shown in the warnings summary).

    ``-W error::tenantguard.pytest_plugin.TenantguardWarning`` turns them into failures.
    """


@dataclass(frozen=True, slots=True)
class TenantguardOptions:
    """What to check, besides the database and the runtime role."""

    tenant_column: str = "tenant_id"
    setting: str | None = None  # None: inferred from the policies
    schemas: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    fail_on: Severity = Severity.LOW

    def __post_init__(self) -> None:  # accept lists and "high" from hand-written overrides
        object.__setattr__(self, "schemas", tuple(self.schemas))
        object.__setattr__(self, "tables", tuple(self.tables))
        object.__setattr__(self, "fail_on", _severity(self.fail_on))


# --------------------------------------------------------------------------- messages


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line for line in text.strip().splitlines())


def format_findings(findings: Iterable[Finding]) -> str:
    """Findings as text: severity, rule, object, message, fix SQL and evidence SQL."""
    blocks = []
    for f in sorted(findings, key=lambda f: (-f.level, f.rule.code, f.object)):
        lines = [
            f"[{str(f.level).upper()}] {f.rule.code} {f.rule.name}: {f.object}",
            f"    {f.message}",
        ]
        if f.rule.description:
            lines.append(f"    why: {f.rule.description.strip()}")
        if f.evidence:
            lines += ["    evidence (the SQL that proved it):", _indent(f.evidence)]
        if f.fix_sql:
            lines += ["    fix:", _indent(f.fix_sql)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _severity(value: Severity | str) -> Severity:
    return value if isinstance(value, Severity) else Severity.parse(value)


def assert_isolated(
    report: Report,
    *,
    fail_on: Severity | str = Severity.LOW,
    rule: str | None = None,
) -> None:
    """Raise :class:`NotIsolated` (an ``AssertionError``) if *report* has findings at or
    above *fail_on* (optionally only those of rule code *rule*), or a check that could
    not run (a coverage rule's finding, whatever its severity: nothing was proven there).
    Other findings below the threshold are emitted as :class:`TenantguardWarning`."""
    __tracebackhide__ = True
    threshold = _severity(fail_on)
    findings = [f for f in report.findings if rule is None or f.rule.code == rule]
    failing = [f for f in findings if f.level >= threshold or f.rule.coverage]
    below = [f for f in findings if f not in failing]
    if below:
        warnings.warn(
            TenantguardWarning(
                f"tenantguard {report.tool}: {len(below)} finding(s) below {threshold} "
                f"in {report.target}:\n{format_findings(below)}"
            ),
            stacklevel=2,
        )
    if failing:
        what = f"rule {rule}" if rule else report.tool
        raise NotIsolated(
            f"tenantguard {what}: {len(failing)} finding(s) at or above {threshold} "
            f"in {report.target}\n\n{format_findings(failing)}",
            failing,
        )


# --------------------------------------------------------------------------- running


@dataclass(frozen=True, slots=True)
class _Target:
    dsn: str
    app_role: str | None
    app_dsn: str | None
    options: TenantguardOptions


def _tool_module(tool: ToolName) -> Any:
    """Import the tool lazily; None if this installation does not have it."""
    try:
        return importlib.import_module(_MODULES[tool])
    except ModuleNotFoundError as exc:
        if exc.name is not None and _MODULES[tool].startswith(exc.name):
            return None
        raise


def _static_rules(tool: ToolName) -> list[Rule] | None:
    module = _tool_module(tool)
    if module is None:
        return None
    rules = getattr(module, "RULES", None)
    return list(rules) if rules is not None else []


def _execute(tool: ToolName, target: _Target) -> Report:
    """Connect as the admin and run *tool*; configuration problems fail without a traceback."""
    from tenantguard.admin.connect import admin_connect
    from tenantguard.errors import TenantGuardError
    from tenantguard.tooling.config import parse_tenant_columns

    module = _tool_module(tool)
    if module is None:
        pytest.skip(f"tenantguard {tool} is not available in this installation")
    if target.app_role is None and target.app_dsn is None:
        pytest.fail(
            f"tenantguard {tool}: no runtime role to check; pass --tenantguard-app-role ROLE "
            "or --tenantguard-app-dsn DSN (ini tenantguard_app_role / tenantguard_app_dsn), "
            "or override the tenantguard_app_role / tenantguard_app_dsn fixture",
            pytrace=False,
        )
    run: Callable[..., Report] = getattr(module, _FUNCTIONS[tool])
    o = target.options
    try:
        # "tenant_id app.companies=id": the default column and TABLE=COLUMN mappings
        default, mapping = parse_tenant_columns(o.tenant_column.replace(",", " ").split())
        column = default or "tenant_id"
        with admin_connect(target.dsn, autocommit=True) as conn:
            return run(
                conn,
                app_role=target.app_role,
                app_dsn=target.app_dsn,
                tenant_column=column,
                tenant_columns=mapping,
                setting=o.setting,
                schemas=list(o.schemas) or None,
                tables=list(o.tables) or None,
            )
    except TenantGuardError as exc:
        pytest.fail(f"tenantguard {tool}: {exc}", pytrace=False)
    except psycopg.Error as exc:  # e.g. an admin without the privileges the tool needs
        first = first_line(exc)
        pytest.fail(
            f"tenantguard {tool}: database error: {first} (the admin DSN needs a superuser, "
            "or a member of the runtime role with the privileges the tool reads)",
            pytrace=False,
        )


_CACHE = pytest.StashKey[dict[tuple[ToolName, _Target], Report | BaseException]]()


class Tenantguard:
    """What the ``tenantguard`` fixture hands out: audit and probe the configured database."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        dsn: str,
        app_role: str | None,
        app_dsn: str | None,
        options: TenantguardOptions,
    ) -> None:
        self._config = config
        self.target = _Target(dsn, app_role, app_dsn, options)

    @property
    def options(self) -> TenantguardOptions:
        return self.target.options

    def _with(
        self,
        dsn: str | None,
        app_role: str | None,
        app_dsn: str | None,
        options: dict[str, Any],
    ) -> _Target:
        opts = {k: v for k, v in options.items() if v is not None}
        if app_role is None and app_dsn is None:
            app_role, app_dsn = self.target.app_role, self.target.app_dsn
        return _Target(
            dsn or self.target.dsn, app_role, app_dsn, replace(self.target.options, **opts)
        )

    def run(
        self,
        tool: ToolName,
        *,
        dsn: str | None = None,
        app_role: str | None = None,
        app_dsn: str | None = None,
        tenant_column: str | None = None,
        setting: str | None = None,
        schemas: Sequence[str] | None = None,
        tables: Sequence[str] | None = None,
    ) -> Report:
        """Run *tool* now (never cached) and return its report. Keywords override the
        configuration; passing ``app_role`` or ``app_dsn`` replaces both."""
        target = self._with(
            dsn,
            app_role,
            app_dsn,
            {
                "tenant_column": tenant_column,
                "setting": setting,
                "schemas": schemas,
                "tables": tables,
            },
        )
        return _execute(tool, target)

    def audit(self, **overrides: Any) -> Report:
        """Run the audit now; see :meth:`run` for the keywords."""
        return self.run("audit", **overrides)

    def probe(self, **overrides: Any) -> Report:
        """Run the probe now (imported on first use); see :meth:`run` for the keywords."""
        return self.run("probe", **overrides)

    def session_report(self, tool: ToolName) -> Report:
        """The report of *tool* for this target, run at most once per test session."""
        cache = self._config.stash.setdefault(_CACHE, {})
        key = (tool, self.target)
        if key not in cache:
            try:
                cache[key] = _execute(tool, self.target)
            except (Exception, pytest.fail.Exception) as exc:
                cache[key] = exc  # every item of this tool reports the same failure
        outcome = cache[key]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def assert_isolated(self, report: Report, *, rule: str | None = None) -> None:
        """:func:`assert_isolated` with the configured fail-on threshold."""
        __tracebackhide__ = True
        assert_isolated(report, fail_on=self.options.fail_on, rule=rule)


# --------------------------------------------------------------------------- options


_STRING_OPTIONS = {
    "dsn": "administrator DSN of the database to check (superuser or member of the runtime role)",
    "app_role": "the runtime role the application logs in as",
    "app_dsn": "or: the application's DSN (its login role is checked)",
    "tenant_column": "tenant column (default: tenant_id), and TABLE=COLUMN mappings, "
    "space-separated (tenant_id app.companies=id)",
    "setting": "tenant setting (default: inferred from the policies)",
    "fail_on": "fail on findings at or above: low, medium, high, critical (default: low)",
}
_LIST_OPTIONS = {
    "schemas": ("schema", "only these schemas"),
    "tables": ("table", "only these SCHEMA.TABLEs"),
    "tools": ("tool", "tools whose rules --tenantguard collects: audit, probe (default: both)"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tenantguard", "tenantguard: tenant isolation checks")
    group.addoption(
        "--tenantguard",
        action="store_true",
        default=None,
        dest="tenantguard_checks",
        help="collect one test item per tenantguard audit/probe rule (ini: tenantguard_checks)",
    )
    parser.addini(
        "tenantguard_checks",
        "collect one test item per tenantguard audit/probe rule",
        type="bool",
        default=False,
    )
    for name, text in _STRING_OPTIONS.items():
        group.addoption(
            f"--tenantguard-{name.replace('_', '-')}",
            dest=f"tenantguard_{name}",
            default=None,
            metavar=name.upper(),
            help=f"{text} (ini: tenantguard_{name})",
        )
        parser.addini(f"tenantguard_{name}", text, type="string", default="")
    for name, (flag, text) in _LIST_OPTIONS.items():
        group.addoption(
            f"--tenantguard-{flag}",
            dest=f"tenantguard_{name}",
            action="append",
            default=None,
            metavar=flag.upper(),
            help=f"{text}; repeatable (ini: tenantguard_{name}, space-separated)",
        )
        parser.addini(f"tenantguard_{name}", text, type="args", default=[])


def _option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(f"tenantguard_{name}")
    if value is not None:
        return value
    return config.getini(f"tenantguard_{name}")


def _string(config: pytest.Config, name: str) -> str | None:
    value = _option(config, name)
    return str(value) if value else None


def _list(config: pytest.Config, name: str) -> tuple[str, ...]:
    return tuple(str(v) for v in _option(config, name) or ())


def _options_from(config: pytest.Config) -> TenantguardOptions:
    try:
        fail_on = Severity.parse(_string(config, "fail_on") or "low")
    except ValueError as exc:
        raise pytest.UsageError(f"tenantguard_fail_on: {exc}") from None
    return TenantguardOptions(
        tenant_column=_string(config, "tenant_column") or "tenant_id",
        setting=_string(config, "setting"),
        schemas=_list(config, "schemas"),
        tables=_list(config, "tables"),
        fail_on=fail_on,
    )


def _tools(config: pytest.Config) -> tuple[ToolName, ...]:
    names = [n for v in _list(config, "tools") for n in v.replace(",", " ").split()]
    unknown = sorted(set(names) - set(TOOLS))
    if unknown:
        raise pytest.UsageError(f"tenantguard_tools: unknown tool(s) {unknown}; use audit, probe")
    return tuple(t for t in TOOLS if t in names) if names else TOOLS


def _checks_enabled(config: pytest.Config) -> bool:
    flag = config.getoption("tenantguard_checks")
    return bool(flag) if flag is not None else bool(config.getini("tenantguard_checks"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "tenantguard: a tenant-isolation check collected by --tenantguard"
    )
    if _checks_enabled(config):
        if not hasattr(pytest, "Directory"):  # the fixtures work on any pytest
            raise pytest.UsageError("--tenantguard needs pytest 8 or later")
        _options_from(config)  # report a bad fail-on before collection, not per item
        _tools(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not _checks_enabled(config):
        return []
    opts = _options_from(config)
    return [
        f"tenantguard: isolation checks ({', '.join(_tools(config))}), "
        f"fail on {opts.fail_on} and above"
    ]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tenantguard_dsn(pytestconfig: pytest.Config) -> str:
    """Administrator DSN of the database to check. Override it to return the DSN of the
    database your own fixture built (migrations and all)."""
    dsn = _string(pytestconfig, "dsn")
    if not dsn:
        pytest.fail(
            "tenantguard: no database to check; pass --tenantguard-dsn DSN, set "
            "tenantguard_dsn in the ini file, or override the tenantguard_dsn fixture",
            pytrace=False,
        )
    return dsn


@pytest.fixture(scope="session")
def tenantguard_app_role(pytestconfig: pytest.Config) -> str | None:
    """The runtime role to check (or None when ``tenantguard_app_dsn`` names it)."""
    return _string(pytestconfig, "app_role")


@pytest.fixture(scope="session")
def tenantguard_app_dsn(pytestconfig: pytest.Config) -> str | None:
    """The application's DSN; its login role is checked."""
    return _string(pytestconfig, "app_dsn")


@pytest.fixture(scope="session")
def tenantguard_options(pytestconfig: pytest.Config) -> TenantguardOptions:
    """Tenant column, setting, schemas, tables and fail-on threshold."""
    return _options_from(pytestconfig)


@pytest.fixture
def tenantguard(
    pytestconfig: pytest.Config,
    tenantguard_dsn: str,
    tenantguard_app_role: str | None,
    tenantguard_app_dsn: str | None,
    tenantguard_options: TenantguardOptions,
) -> Tenantguard:
    """Audit and probe the configured database: ``.audit()``, ``.probe()``,
    ``.assert_isolated(report)``."""
    return Tenantguard(
        pytestconfig,
        dsn=tenantguard_dsn,
        app_role=tenantguard_app_role,
        app_dsn=tenantguard_app_dsn,
        options=tenantguard_options,
    )


@pytest.fixture
def tenantguard_audit(tenantguard: Tenantguard) -> Callable[..., Report]:
    """``tenantguard_audit(**overrides) -> Report``: run the audit now."""
    return tenantguard.audit


@pytest.fixture
def tenantguard_probe(tenantguard: Tenantguard) -> Callable[..., Report]:
    """``tenantguard_probe(**overrides) -> Report``: run the probe now."""
    return tenantguard.probe


# --------------------------------------------------------------------------- --tenantguard


class IsolationCheck(pytest.Function):
    """One rule of one tool, run against the session's report of that tool."""

    tool: ToolName
    rule: Rule | None  # None: findings of rules not known at collection time

    def repr_failure(  # type: ignore[override]
        self, excinfo: ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, NotIsolated):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path | str, int | None, str]:
        code = self.rule.code if self.rule else OTHER_RULES
        return self.path, None, f"tenantguard {self.tool} {code}"


def _check_function(tool: ToolName, rule: Rule | None, known: frozenset[str]) -> Any:
    def check(tenantguard: Tenantguard) -> None:
        __tracebackhide__ = True
        report = tenantguard.session_report(tool)
        if rule is not None:
            tenantguard.assert_isolated(report, rule=rule.code)
            return
        other = replace(report, findings=[f for f in report.findings if f.rule.code not in known])
        tenantguard.assert_isolated(other)

    check.__name__ = f"tenantguard_{tool}_{rule.code if rule else 'other'}"
    check.__doc__ = rule.summary if rule else f"findings of {tool} rules not listed above"
    return check


class TenantguardChecks(pytest.Collector):
    """The ``tenantguard`` node: one child item per rule of each enabled tool."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        items: list[pytest.Item | pytest.Collector] = []
        for tool in _tools(self.config):
            rules = _static_rules(tool)
            if rules is None:  # tool not installed: nothing to collect
                continue
            group = _ToolChecks.from_parent(self, name=tool)
            group.tool = tool
            group.rules = rules
            items.append(group)
        return items


class _ToolChecks(pytest.Collector):
    tool: ToolName
    rules: list[Rule]

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        known = frozenset(r.code for r in self.rules)
        out: list[pytest.Item | pytest.Collector] = []
        for rule in [*self.rules, None]:
            name = f"{rule.code}-{rule.name}" if rule else OTHER_RULES
            item = IsolationCheck.from_parent(
                self, name=name, callobj=_check_function(self.tool, rule, known)
            )
            item.tool, item.rule = self.tool, rule
            item.add_marker(pytest.mark.tenantguard)
            out.append(item)
        return out


def _anchor(session: pytest.Session, items: Sequence[pytest.Item]) -> pytest.Collector:
    """The deepest directory node above every collected test (so the ``conftest.py``
    fixtures that apply to those tests apply to the checks too); the first collected
    directory when there are none."""
    common: list[Node] | None = None
    for item in items:
        chain = item.listchain()
        if common is None:
            common = chain
        else:
            n = 0
            while n < min(len(common), len(chain)) and common[n] is chain[n]:
                n += 1
            common = common[:n]
    candidates = common if common is not None else session.stash.get(_DIRS, [])
    dirs = [n for n in candidates if isinstance(n, pytest.Directory)]
    if not dirs:
        return session
    return dirs[-1] if common is not None else dirs[0]


_DIRS = pytest.StashKey[list[pytest.Directory]]()


def pytest_collectstart(collector: pytest.Collector) -> None:
    if _checks_enabled(collector.config) and isinstance(collector, pytest.Directory):
        collector.session.stash.setdefault(_DIRS, []).append(collector)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # tryfirst: added before -k / -m deselect, so they select among the checks too
    if not _checks_enabled(config):
        return
    checks = TenantguardChecks.from_parent(_anchor(session, items), name="tenantguard")
    for node in checks.collect():
        assert isinstance(node, pytest.Collector)
        items.extend(i for i in node.collect() if isinstance(i, pytest.Item))
