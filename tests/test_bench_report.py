"""BENCHMARKS.md says which PgBouncer ran, from the results JSON (no server needed)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tenantguard.bench.report import load_results, write_markdown

RECORDED = Path(__file__).resolve().parent.parent / "bench" / "results-10000x100.json"


def render(tmp_path: Path, res: dict[str, Any]) -> str:
    out = tmp_path / "results"
    out.mkdir()
    (out / "results-10000x100.json").write_text(json.dumps(res))
    md = tmp_path / "BENCHMARKS.md"
    write_markdown(load_results(out), out, md, rel="results")
    return md.read_text()


@pytest.fixture
def old() -> dict[str, Any]:
    """A committed run, as written before the PgBouncer version was recorded."""
    res: dict[str, Any] = json.loads(RECORDED.read_text())
    res["meta"].pop("pgbouncer", None)
    return res


def test_results_without_the_version_still_render(tmp_path, old) -> None:  # type: ignore[no-untyped-def]
    text = render(tmp_path, old)
    assert "- PgBouncer: version not recorded, prepared statements not kept" in text
    assert "Direct without prepared statements" in text


@pytest.mark.parametrize("keeps", [True, False])
def test_the_recorded_version_is_stated(tmp_path, old, keeps) -> None:  # type: ignore[no-untyped-def]
    res = copy.deepcopy(old)
    version = "1.24.1" if keeps else "1.18.0"
    res["meta"]["pgbouncer"] = {
        "version": version,
        "keeps_prepared": keeps,
        "max_prepared_statements": 100 if keeps else None,
    }
    if keeps:  # such a run has no unprepared direct cell
        for name, g in res["groups"].items():
            if "pgbouncer/" in name:
                g["cells"] = [c for c in g["cells"] if c["via"] != "direct-noprep"]
    text = render(tmp_path, res)
    if keeps:
        assert (
            "- PgBouncer: 1.24.1, prepared statements kept (`max_prepared_statements = 100`" in text
        )
        assert "Through PgBouncer 1.24.1 the clients keep prepared statements" in text
        assert "Direct without prepared statements" not in text
    else:
        assert "- PgBouncer: 1.18.0, prepared statements not kept" in text
        assert "Direct without prepared statements" in text


def test_the_pgbench_comparison_follows_the_data(tmp_path, old) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    text = render(tmp_path / "a", old)
    assert "The Python `tenantguard` variant is below this in all 9 measurements" in text
    assert "At the highest client count the server's share alone is below 0.85x" in text
    assert "out of reach for any client" not in text
    res = copy.deepcopy(old)
    for cell in res["groups"]["workloads/select/1"]["cells"]:
        if cell["label"] == "tenantguard":  # a client whose own CPU dilutes the server's share
            cell["ratio_median"] = 0.99
    for per in res["pgbench"]["clients"].values():
        per["tenantguard"]["ratio_median"] = 0.9
    text = render(tmp_path / "b", res)
    assert "The Python `tenantguard` variant is below this in 8 of 9 measurements" in text
    assert "the server's share alone is below 0.85x" not in text


def test_a_failed_pgbench_is_stated_and_the_run_stands(tmp_path, old) -> None:  # type: ignore[no-untyped-def]
    res = copy.deepcopy(old)
    res["pgbench"] = {"error": "pgbench failed (2): connection refused"}
    text = render(tmp_path, res)
    assert "pgbench (the server's share) failed: pgbench failed (2): connection refused" in text
    assert "**pgbench failed** (10000x100: pgbench failed (2): connection refused)" in text
    assert "### The server's share" not in text and "## Dataset 10000x100" in text


def test_a_failing_pgbench_is_recorded_not_raised(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.bench import run

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("pgbench failed (exit 2): connection refused\nthe whole stderr")

    monkeypatch.setattr(run, "find_pgbench", lambda: "/usr/bin/pgbench")
    monkeypatch.setattr(run, "measure_pgbench", broken)
    cfg = run.BenchConfig(dsn="", output=tmp_path)
    assert run._pgbench_share(cfg, "raw", "app") == {
        "error": "pgbench failed (exit 2): connection refused"
    }
    monkeypatch.setattr(run, "find_pgbench", lambda: None)
    assert run._pgbench_share(cfg, "raw", "app") is None
    assert run._pgbench_share(run.BenchConfig(dsn="", pgbench=False), "raw", "app") is None
