"""Where tenantguard's client CPU per point select goes (the figures in BENCHMARKS.md).

    .venv/bin/python tools/profile_hotpath.py [--dsn SUPERUSER_DSN] [-n 4000] [--rounds 5]
    .venv/bin/python tools/profile_hotpath.py --callgrind     # instructions per op (valgrind)

Starts an embedded PostgreSQL when no DSN is given and builds a small bench dataset.
Every path runs the benchmark's own point select (a ``psycopg.sql.Composed`` query
with named parameters, as ``tenantguard bench`` sends it). Two measures:

* client CPU per operation (``time.process_time``: this process, every thread),
  paths interleaved in rounds, median; noisy on a shared machine, and on this kind of
  VM dominated by whether the scheduler put each backend on the client's CPU or the
  other one (a cross-CPU wake-up costs more than the request): ``--pin CPU`` runs the
  client and every backend on one CPU, so all paths are measured alike;
* with ``--callgrind``, instructions per operation under valgrind: deterministic,
  the difference of two runs of N and 4N operations (start-up cancels out).

Paths, from the bare baseline up: raw psycopg reusing one cursor (the bench's
``raw``); raw psycopg with a new cursor per statement (``conn.execute()``, what a
pool user writes); psycopg_pool + hand WHERE (the bench's ``pool_where``);
TenantPool (the bench's ``tenantguard``); TenantPool forced onto psycopg's
``conn.pipeline()``. Components, in isolation: ``tenant()``, a TenantPool lease
with no statement, psycopg_pool getconn + putconn, ``conn.cursor()``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from tenantguard import TenantPool, tenant
from tenantguard.bench.variants import _params, _queries

PATHS = ["raw", "raw_new_cursor", "pool_where", "tenantguard", "tenantguard_pipeline"]
PARTS = ["tenant_scope", "lease_only", "psycopg_pool_get_put", "cursor_create"]
LABELS = {
    "raw": "raw psycopg, one cursor reused (bench: raw)",
    "raw_new_cursor": "raw psycopg, conn.execute() (new cursor)",
    "pool_where": "psycopg_pool + hand WHERE (bench: pool_where)",
    "tenantguard": "TenantPool (bench: tenantguard)",
    "tenantguard_pipeline": "TenantPool on conn.pipeline() (fallback)",
    "tenant_scope": "  part: with tenant(t)",
    "lease_only": "  part: tenant() + TenantPool lease, no SQL",
    "psycopg_pool_get_put": "  part: psycopg_pool getconn + putconn",
    "cursor_create": "  part: conn.cursor()",
}
TENANTS, ROWS = 200, 20


def build_paths(
    app: str, raw: str
) -> tuple[dict[str, Callable[[int], None]], Callable[[], None], dict[str, int]]:
    """Each path as ``fn(n)`` running n operations, a function closing everything, and
    the server backend pid each path talks to (each pool has a single connection)."""
    q_where = _queries("items", True)["select"]
    q_rls = _queries("items", False)["select"]
    craw = psycopg.connect(raw, autocommit=True)
    cur = craw.cursor()
    ppool: ConnectionPool[Any] = ConnectionPool(
        raw, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True
    )
    ppool.wait()
    tg = TenantPool(app, min_size=1, max_size=1, tenant_kind="bigint")
    tg_slow = TenantPool(app, min_size=1, max_size=1, tenant_kind="bigint")
    tg.pool.wait()
    tg_slow.pool.wait()

    def key(i: int) -> tuple[int, int]:
        t = 1 + i % TENANTS
        return t, (t - 1) * ROWS + 1 + i % ROWS

    def raw_(n: int) -> None:
        for i in range(n):
            cur.execute(q_where, _params("select", *key(i)))
            cur.fetchall()

    def raw_new(n: int) -> None:
        for i in range(n):
            craw.execute(q_where, _params("select", *key(i))).fetchall()

    def pool_where(n: int) -> None:
        for i in range(n):
            with ppool.connection() as c:
                list(c.execute(q_where, _params("select", *key(i))).fetchall())

    def tenantguard(p: TenantPool, fast: bool) -> Callable[[int], None]:
        def run(n: int) -> None:
            for i in range(n):
                t, k = key(i)
                with tenant(t), p.connection() as c:
                    c._tg_fast_path = fast
                    c.execute(q_rls, _params("select", t, k)).fetchall()

        return run

    def tenant_scope(n: int) -> None:
        for i in range(n):
            with tenant(1 + i % TENANTS):
                pass

    def lease_only(n: int) -> None:
        for i in range(n):
            with tenant(1 + i % TENANTS), tg.connection():
                pass

    def get_put(n: int) -> None:
        for _ in range(n):
            ppool.putconn(ppool.getconn())

    def cursor_create(n: int) -> None:
        for _ in range(n):
            craw.cursor()

    paths = {
        "raw": raw_,
        "raw_new_cursor": raw_new,
        "pool_where": pool_where,
        "tenantguard": tenantguard(tg, True),
        "tenantguard_pipeline": tenantguard(tg_slow, False),
        "tenant_scope": tenant_scope,
        "lease_only": lease_only,
        "psycopg_pool_get_put": get_put,
        "cursor_create": cursor_create,
    }

    def close() -> None:
        craw.close()
        ppool.close()
        tg.close()
        tg_slow.close()

    def pid_of(p: Any) -> int:
        with p.connection() as c:
            return int(c.info.backend_pid)

    with tenant(1):
        pids = {
            "raw": craw.info.backend_pid,
            "raw_new_cursor": craw.info.backend_pid,
            "pool_where": pid_of(ppool),
            "tenantguard": pid_of(tg),
            "tenantguard_pipeline": pid_of(tg_slow),
        }
    return paths, close, pids


def _server_cpu(pid: int | None) -> float | None:
    """CPU time of a local server backend (Linux schedstat, ns), or None if not readable."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except OSError:
        return None


def _pin(pids: list[int], cpu: int) -> None:
    """Run this process and the given server backends on one CPU (Linux, local server)."""
    os.sched_setaffinity(0, {cpu})
    for pid in pids:
        os.sched_setaffinity(pid, {cpu})


def cpu_profile(app: str, raw: str, n: int, rounds: int, pin: int | None = None) -> None:
    paths, close, pids = build_paths(app, raw)
    if pin is not None:
        _pin(sorted(set(pids.values())), pin)
    try:
        for fn in paths.values():
            fn(50)  # warm-up: past psycopg's prepare threshold
        res: dict[str, list[float]] = {k: [] for k in paths}
        srv: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(rounds):
            for name, fn in paths.items():
                s0 = _server_cpu(pids.get(name))
                t0 = time.process_time()
                fn(n)
                res[name].append((time.process_time() - t0) / n * 1e6)
                s1 = _server_cpu(pids.get(name))
                if s0 is not None and s1 is not None:
                    srv[name].append((s1 - s0) / n * 1e6)
    finally:
        close()
    where = "" if pin is None else f"; client and backends pinned to CPU {pin}"
    print(
        f"CPU per point select, median of {rounds} rounds x {n} ops: client (process time)"
        f" and, when the server is local, its backend (schedstat){where}"
    )
    for name, vals in res.items():
        server = f"   server {statistics.median(srv[name]):6.1f} us" if srv[name] else ""
        print(f"  {LABELS[name]:48s} {statistics.median(vals):7.1f} us{server}")


def one_path(app: str, raw: str, name: str, n: int) -> None:
    """Child of --callgrind: warm up, then n operations of one path."""
    paths, close, _ = build_paths(app, raw)
    try:
        paths[name](50)
        paths[name](n)
    finally:
        close()


def _instructions(app: str, raw: str, name: str, n: int, out_dir: str) -> int:
    out = os.path.join(out_dir, f"{name}-{n}.out")
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--one-path",
            name,
            "-n",
            str(n),
            "--app-dsn",
            app,
            "--raw-dsn",
            raw,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # One hash seed for every run: the instruction count of dict and set lookups
        # depends on it (about 1k per point select between seeds, measured).
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    with open(out) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError(f"no summary in {out}")


def callgrind_profile(app: str, raw: str, n: int, only: list[str] | None = None) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind (apt-get install -y valgrind)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tg-callgrind-") as tmp:
        for name in only or PATHS + PARTS:
            a = _instructions(app, raw, name, n, tmp)
            b = _instructions(app, raw, name, 4 * n, tmp)
            rows.append((name, (b - a) / (3 * n)))
    print(f"instructions per point select (callgrind, ({4 * n} - {n} ops) / {3 * n})")
    for name, per in rows:
        print(f"  {LABELS[name]:48s} {per / 1000:7.1f} k")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn")
    ap.add_argument("-n", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--callgrind", action="store_true", help="instructions per op (valgrind)")
    ap.add_argument(
        "--pin",
        type=int,
        metavar="CPU",
        help="run the client and the paths' server backends on this CPU (local server, Linux):"
        " removes the run-to-run noise of where the scheduler puts each backend",
    )
    ap.add_argument(
        "--paths",
        help="with --callgrind: only these paths, comma-separated (default: all), e.g. "
        "pool_where,tenantguard",
    )
    ap.add_argument("--one-path", help=argparse.SUPPRESS)
    ap.add_argument("--app-dsn", help=argparse.SUPPRESS)
    ap.add_argument("--raw-dsn", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_path:
        one_path(args.app_dsn, args.raw_dsn, args.one_path, args.n)
        return
    from tenantguard.admin import admin_connect
    from tenantguard.bench.dataset import build_dataset
    from tenantguard.bench.run import _with
    from tenantguard.embedded import embedded_postgres

    with nullcontext(args.dsn) if args.dsn else embedded_postgres() as dsn0:
        with admin_connect(dsn0, autocommit=True) as a:
            ds = build_dataset(a, TENANTS, ROWS)
        app, raw = _with(dsn0, user=ds.app_role), _with(dsn0, user=ds.raw_role)
        if args.callgrind:
            only = args.paths.split(",") if args.paths else None
            callgrind_profile(app, raw, max(200, args.n // 10), only)
        else:
            cpu_profile(app, raw, args.n, args.rounds, args.pin)


if __name__ == "__main__":
    main()
