"""pgbench's report is read strictly: a run that failed is never a figure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tenantguard.bench.pgbench import SCRIPTS, parse_output

REPORT = """pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/x/tenantguard.sql
number of clients: 4
number of transactions actually processed: 45204
number of failed transactions: 0 (0.000%)
latency average = 0.088 ms
initial connection time = 10.190 ms
tps = 45204.938989 (without initial connection time)
"""


def test_throughput_and_latency_are_read() -> None:
    assert parse_output(REPORT) == (45204.938989, 0.088)


def test_failed_transactions_or_no_throughput_raise() -> None:
    with pytest.raises(RuntimeError, match="3 failed"):
        parse_output(REPORT.replace("failed transactions: 0 ", "failed transactions: 3 "))
    with pytest.raises(RuntimeError, match="no throughput"):
        parse_output("pgbench: error: connection to server failed\n")


def test_scripts_send_what_the_variants_send() -> None:
    role, text = SCRIPTS["tenantguard"]
    lines = text.splitlines()
    body = lines[lines.index(r"\startpipeline") + 1 : lines.index(r"\endpipeline")]
    assert role == "app" and len(body) == 2  # binding + select under one Sync
    assert "set_config('app.tenant_id', :t::text, true)" in body[0]
    assert "WHERE id = :k" in body[1]  # no hand-written tenant filter: RLS does it
    assert "tenant_id = :t AND" in SCRIPTS["raw"][1] and SCRIPTS["raw"][0] == "raw"
    naive = SCRIPTS["naive"][1]
    assert naive.index("BEGIN;") < naive.index("set_config") < naive.index("COMMIT;")


def _script(path: Path, body: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_a_pgbench_that_does_not_run_is_not_found(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Debian's /usr/bin/pgbench wrapper exists without the server package: it fails."""
    from tenantguard.bench import pgbench

    wrapper = _script(tmp_path / "bin" / "pgbench", "echo 'Error: no pgbench' >&2; exit 1")
    monkeypatch.setattr(pgbench.shutil, "which", lambda name: wrapper)
    monkeypatch.setattr(pgbench, "DEBIAN_PGBENCH", str(tmp_path / "lib" / "*" / "bin" / "pgbench"))
    assert pgbench.find_pgbench() is None
    for major in ("9", "15", "16"):
        _script(
            tmp_path / "lib" / major / "bin" / "pgbench", f"echo 'pgbench (PostgreSQL) {major}'"
        )
    assert pgbench.find_pgbench() == str(tmp_path / "lib" / "16" / "bin" / "pgbench")


def test_a_failing_pgbench_says_why_on_its_first_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.bench.pgbench import find_pgbench, measure
    from tenantguard.errors import first_line

    binary = find_pgbench()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI has PostgreSQL 15's pgbench (Debian postgresql-15)")
        pytest.skip("pgbench is not installed")
    with pytest.raises(RuntimeError) as info:
        measure(
            binary,
            {"raw": "host=127.0.0.1 port=1 user=nobody", "app": "host=127.0.0.1 port=1"},
            [1],
            rounds=1,
            seconds=1,
            tenants=1,
            rows=1,
        )
    line = first_line(info.value)
    assert line.startswith("pgbench failed (exit ") and "127.0.0.1" in line, line
