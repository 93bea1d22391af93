"""The database's share of isolation, measured with a C client (PostgreSQL's pgbench).

A Python client spends more CPU per request than the server does, so on a small
machine Python's own cost decides the throughput ratios. pgbench spends almost none:
driving the same statements with it shows what isolation costs the *server* alone,
the ceiling any client library could reach.

Scripts, each with pgbench's prepared statements (``-M prepared``), interleaved in
rounds like the rest of the harness:

* ``raw``: the point select with the hand-written ``WHERE``, as the RLS-bypassing
  role (the Python ``raw`` variant's statement);
* ``tenantguard``: what TenantPool sends, as the application role under RLS: the
  binding ``set_config(.., true)`` x2 and the point select in one pipeline, one
  Sync (one implicit transaction, one round trip);
* ``naive``: ``BEGIN``, the binding, the select, ``COMMIT``: four round trips.

pgbench checks no rows; the Python variants do (cross-tenant rows). This is a cost
measurement only.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
from glob import glob
from pathlib import Path
from typing import Any

__all__ = ["SCRIPTS", "find_pgbench", "measure", "parse_output"]

_KEYS = "\\set t random(1, :tenants)\n\\set k (:t - 1) * :rows + random(1, :rows)\n"
_SELECT = "SELECT tenant_id, id, amount FROM bench.items WHERE {where}id = :k;\n"
_BIND = (
    "SELECT pg_catalog.set_config('app.tenant_id', :t::text, true), "
    "pg_catalog.set_config('app.user_id', '', true);\n"
)

#: name -> (role: "raw" or "app", script)
SCRIPTS: dict[str, tuple[str, str]] = {
    "raw": ("raw", _KEYS + _SELECT.format(where="tenant_id = :t AND ")),
    "tenantguard": (
        "app",
        _KEYS + "\\startpipeline\n" + _BIND + _SELECT.format(where="") + "\\endpipeline\n",
    ),
    "naive": ("app", _KEYS + "BEGIN;\n" + _BIND + _SELECT.format(where="") + "COMMIT;\n"),
}

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_LAT = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_FAILED = re.compile(r"^number of failed transactions: ([0-9]+)", re.M)


#: Debian's versioned binaries (``postgresql-NN``, the server package, ships pgbench).
DEBIAN_PGBENCH = "/usr/lib/postgresql/*/bin/pgbench"


def _answers(binary: str) -> bool:
    """True when *binary* runs and says it is pgbench."""
    try:
        proc = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and proc.stdout.startswith("pgbench")


def _major(path: str) -> int:
    version = Path(path).parent.parent.name
    return int(version) if version.isdigit() else 0


def find_pgbench() -> str | None:
    """A pgbench that runs: the one on ``PATH``, else Debian's newest versioned one, or None.

    On Debian ``/usr/bin/pgbench`` is postgresql-client-common's wrapper, there with any
    client package, while pgbench itself comes with the server package: the wrapper can
    exist and fail, so each candidate must answer ``--version``.
    """
    candidates = [shutil.which("pgbench"), *sorted(glob(DEBIAN_PGBENCH), key=_major, reverse=True)]
    return next((c for c in candidates if c is not None and _answers(c)), None)


def parse_output(text: str) -> tuple[float, float | None]:
    """(transactions per second, average latency in ms) from pgbench's report."""
    tps = _TPS.search(text)
    if tps is None:
        raise RuntimeError(f"pgbench printed no throughput:\n{text[-2000:]}")
    failed = _FAILED.search(text)
    if failed is not None and int(failed.group(1)) > 0:
        raise RuntimeError(f"pgbench: {failed.group(1)} failed transactions:\n{text[-2000:]}")
    lat = _LAT.search(text)
    return float(tps.group(1)), float(lat.group(1)) if lat else None


def _run(
    binary: str, dsn: str, script: Path, clients: int, seconds: int, tenants: int, rows: int
) -> tuple[float, float | None]:
    cmd = [
        binary,
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={clients}",
        f"--jobs={min(clients, 2)}",
        f"--time={seconds}",
        f"--define=tenants={tenants}",
        f"--define=rows={rows}",
        f"--file={script}",
        dsn,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "error:" in ln), lines[-1] if lines else "")
        raise RuntimeError(f"pgbench failed (exit {proc.returncode}): {why}\n{proc.stderr[-2000:]}")
    return parse_output(proc.stdout)


def measure(
    binary: str,
    dsns: dict[str, str],
    clients: list[int],
    *,
    rounds: int,
    seconds: int,
    tenants: int,
    rows: int,
) -> dict[str, Any]:
    """Per client count: each script's throughput per round and its ratio to ``raw``."""
    out: dict[str, Any] = {"seconds_per_cell": seconds, "rounds": rounds, "clients": {}}
    names = list(SCRIPTS)
    with tempfile.TemporaryDirectory(prefix="tenantguard-pgbench-") as tmp:
        files = {}
        for name, (_, text) in SCRIPTS.items():
            files[name] = Path(tmp) / f"{name}.sql"
            files[name].write_text(text)
        for c in clients:
            tps: dict[str, list[float]] = {n: [] for n in names}
            lat: dict[str, list[float]] = {n: [] for n in names}
            ratios: dict[str, list[float]] = {n: [] for n in names}
            for r in range(rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                got = {}
                for name in order:
                    t, ms = _run(
                        binary, dsns[SCRIPTS[name][0]], files[name], c, seconds, tenants, rows
                    )
                    got[name] = t
                    tps[name].append(t)
                    if ms is not None:
                        lat[name].append(ms)
                for name in names:
                    ratios[name].append(got[name] / got["raw"])
            out["clients"][str(c)] = {
                name: {
                    "tps_median": statistics.median(tps[name]),
                    "tps_rounds": tps[name],
                    "latency_avg_ms_median": statistics.median(lat[name]) if lat[name] else None,
                    "ratio_median": statistics.median(ratios[name]),
                    "ratio_rounds": ratios[name],
                }
                for name in names
            }
    return out
