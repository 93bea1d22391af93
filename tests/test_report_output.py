"""Report output (issue 13): the human report on stdout, --output in the format asked for,
a clean report that states its scope, table cells never cut off."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.table import Table

from tenantguard._cli_util import folded
from tenantguard.cli import main


@pytest.fixture(scope="module")
def base(saas) -> list[str]:  # type: ignore[no-untyped-def]
    return ["audit", "--dsn", saas.admin_dsn, "--app-role", saas.app_role]


def test_human_report_goes_to_stdout_and_states_its_scope(base) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 0, r.output
    assert "tenantguard audit" in r.stdout and "tenantguard audit" not in r.stderr
    rules = re.search(r"no findings in (\d+) tenant table\(s\), (\d+) rule\(s\)", r.stdout)
    assert rules is not None and rules.group(1) == "3", r.stdout  # users, projects, invoices
    assert int(rules.group(2)) > 30


def test_probe_clean_report_states_tables_and_attempts(saas) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(main, ["probe", "--dsn", saas.admin_dsn, "--app-role", saas.app_role])
    assert r.exit_code == 0, r.output
    got = re.search(r"no findings in (\d+) table\(s\) probed, (\d+) attack attempt\(s\)", r.stdout)
    assert got is not None and int(got.group(1)) == 3 and int(got.group(2)) > 0, r.stdout


def test_lint_clean_report_states_its_scope(tmp_path: Path) -> None:
    f = tmp_path / "001.sql"
    f.write_text("CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint);\n")
    r = CliRunner().invoke(main, ["lint", str(f), "--fail-on", "critical"])
    assert "1 file(s), 1 statement(s), 1 tenant table(s)" in r.stdout, r.stdout


@pytest.mark.parametrize("fmt", ["human", "json", "sarif", "html"])
def test_output_file_holds_the_format_asked_for(base, tmp_path: Path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / f"report.{fmt}"
    r = CliRunner().invoke(main, [*base, "--format", fmt, "--output", str(path)])
    assert r.exit_code == 0, r.output
    text = path.read_text()
    assert r.stdout == ""  # the report is in the file, not also on stdout
    if fmt == "human":
        assert text.startswith("tenantguard audit") and "no findings in" in text
        assert "\x1b[" not in text  # plain text, no colour codes
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
    elif fmt == "json":
        assert json.loads(text)["scope"].endswith("rule(s)")
    elif fmt == "sarif":
        assert json.loads(text)["version"] == "2.1.0"
    else:
        assert text.startswith("<!doctype html>") and "No findings in 3 tenant table(s)" in text


def test_long_cells_fold_instead_of_being_cut() -> None:
    long_word = "app.a_very_long_table_name_that_does_not_fit_in_its_column_at_all"
    sentence = "each attack run as the runtime role on a plain psycopg connection"

    def render(*cells: str) -> tuple[str, str]:
        plain, fold = Table(*map(str, range(len(cells)))), Table(*map(str, range(len(cells))))
        plain.add_row(*cells)
        fold.add_row(*cells)
        out = []
        for table in (plain, folded(fold)):
            buffer = io.StringIO()
            Console(file=buffer, width=30, color_system=None).print(table)
            out.append(buffer.getvalue())
        return out[0], out[1]

    default, text = render(long_word)
    assert "…" in default  # rich's default cuts the word: the control
    assert "…" not in text
    inside = "".join(line.strip("│┃ ") for line in text.splitlines()[3:-1])
    assert long_word in inside  # every character kept, in order
    _, text = render(sentence)
    for word in sentence.split():  # words that fit a line are never split
        assert any(word in line for line in text.splitlines()), word
