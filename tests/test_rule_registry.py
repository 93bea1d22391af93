"""Audit rules, lint rules and probe attacks: one protocol, one registry, nothing left out.

Every rule module is imported and what it defines (its ``Rule``, its ``check``/``run``) is
compared with what its tool's registry runs; a rule that is written but not registered
would never run, and its tests of the other rules would still pass. Controls: a rule
package written here, with a module that forgets to register, is caught.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantguard.tooling.audit.rules import REGISTRY as AUDIT
from tenantguard.tooling.findings import Rule, Severity
from tenantguard.tooling.lint.rules import META
from tenantguard.tooling.lint.rules import REGISTRY as LINT
from tenantguard.tooling.probe.attacks import REGISTRY as PROBE
from tenantguard.tooling.registry import Registry, RuleCheck

TOOLING = Path(__file__).resolve().parents[1] / "src" / "tenantguard" / "tooling"
REGISTRIES = [AUDIT, LINT, PROBE]


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.tool)
def test_every_rule_module_registers_what_it_defines(registry: Registry[object]) -> None:
    assert registry.unregistered() == []
    modules = registry.modules()
    checks = registry.checks()
    assert len(checks) == len(modules)  # one rule per module
    assert {c.module for c in checks} == {m.__name__ for m in modules}
    for c in checks:
        assert c.id.lower().startswith(registry.prefix) and c.rule.tool == registry.tool
        assert c.module.rsplit(".", 1)[1].startswith(c.id.lower())  # tga101_*.py: TGA101


def test_the_tools_run_and_list_what_the_registries_hold() -> None:
    from tenantguard.tooling import audit, lint, probe

    assert AUDIT.rules() == audit.RULES
    assert LINT.rules() + list(META.values()) == lint.RULES
    assert probe.RULES[: len(PROBE.checks())] == PROBE.rules()


def test_registered_checks_follow_the_protocol() -> None:
    for registry in REGISTRIES:
        for c in registry.checks():
            typed: RuleCheck[object] = c
            assert typed.id == c.rule.code
            assert typed.severity is c.rule.severity
            assert typed.title == c.rule.summary


def _package(root: Path, name: str, modules: dict[str, str]) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from tenantguard.tooling.registry import Registry\n"
        f"REGISTRY = Registry('audit', {name!r}, 'tga')\n"
    )
    for mod, body in modules.items():
        (pkg / f"{mod}.py").write_text(body)


_RULE = textwrap.dedent(
    """
    from tenantguard.tooling.findings import Rule, Severity
    from {pkg} import REGISTRY

    RULE = Rule("{code}", "x", Severity.LOW, "audit", "x")
    """
)


@pytest.fixture
def scratch_package(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("scratch_rules")]:
            del sys.modules[name]


def test_control_a_rule_module_that_does_not_register_is_caught(scratch_package: Path) -> None:
    pkg = "scratch_rules_a"
    _package(
        scratch_package,
        pkg,
        {
            "tga901_ok": _RULE.format(pkg=pkg, code="TGA901")
            + "\n@REGISTRY.register(RULE)\ndef check(ctx):\n    return []\n",
            "tga902_forgot": _RULE.format(pkg=pkg, code="TGA902")
            + "\ndef check(ctx):\n    return []\n",
            "tga903_rule_only": _RULE.format(pkg=pkg, code="TGA903"),
            "helpers": "def check(ctx):\n    return []\n",  # not a rule module (no prefix)
        },
    )
    registry = __import__(pkg).REGISTRY
    assert [c.id for c in registry.checks()] == ["TGA901"]
    assert registry.unregistered() == [
        f"{pkg}.tga902_forgot registers no check",
        f"{pkg}.tga902_forgot.RULE (TGA902) is not registered",
        f"{pkg}.tga902_forgot.check() is not registered",
        f"{pkg}.tga903_rule_only registers no check",
        f"{pkg}.tga903_rule_only.RULE (TGA903) is not registered",
    ]


def test_control_a_rule_registered_under_another_tool_or_twice_is_refused() -> None:
    registry: Registry[object] = Registry("audit", "nowhere", "tga")
    with pytest.raises(ValueError, match="not a audit rule"):
        registry.register(Rule("TGL901", "x", Severity.LOW, "lint", "x"))(lambda ctx: [])
    with pytest.raises(ValueError, match="starts 'tga'"):
        registry.register(Rule("TGP901", "x", Severity.LOW, "audit", "x"))(lambda ctx: [])
    rule = Rule("TGA901", "x", Severity.LOW, "audit", "x")
    registry.register(rule)(lambda ctx: [])

    def elsewhere(ctx: object) -> list[object]:
        return []

    elsewhere.__module__ = "nowhere.tga902_copy"
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(rule)(elsewhere)
    assert [r.id for r in registry._entries.values()] == ["TGA901"]


def _private_imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield f"{path.name}:{node.lineno} {node.module}.{alias.name}"


def test_no_tooling_module_imports_another_modules_private_names() -> None:
    found = [hit for p in sorted(TOOLING.rglob("*.py")) for hit in _private_imports(p)]
    assert found == [], "give shared helpers a public name in a shared module"


def test_control_a_private_import_is_caught(tmp_path: Path) -> None:
    rule = tmp_path / "tga999_x.py"
    rule.write_text("from a.b import _helper, public as _alias\nfrom c import __version__\n")
    assert list(_private_imports(rule)) == ["tga999_x.py:1 a.b._helper"]


#: The modules that parse SQL text themselves: the shared analysis, and lint's reader of
#: migration files. Every other module of the tools goes through ``sqlanalysis``.
PARSERS = {"sqlanalysis.py", "lint/engine.py"}


def _parsing_modules(root: Path) -> set[str]:
    out = set()
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module in ("pglast", "pglast.parser")
                and any(a.name in ("parse_sql", "parse_plpgsql", "ParseError") for a in node.names)
            ):
                out.add(path.relative_to(root).as_posix())
    return out


def test_only_the_shared_analysis_parses_sql() -> None:
    assert _parsing_modules(TOOLING) == PARSERS


def test_control_a_rule_that_parses_by_itself_is_caught(tmp_path: Path) -> None:
    (tmp_path / "sqlanalysis.py").write_text("from pglast import parse_sql\n")
    (tmp_path / "rule.py").write_text("from pglast import ast, parse_sql\n")
    assert _parsing_modules(tmp_path) == {"sqlanalysis.py", "rule.py"}
