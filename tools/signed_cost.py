"""What signed tenant contexts cost: server time per statement (pgbench) and the Python
point select, signed vs unsigned, side by side in one database and one run.

    .venv/bin/python tools/signed_cost.py [--dsn ADMIN_DSN] [--tenants 10000] [--rows 100]
        [--pgbench-rounds 5] [--seconds 10] [--python-rounds 15]

One scratch database (dropped afterwards) holds both shapes, so every statement of
both runs against the same server, data and cache:

* ``bench.items``: ``install --signed`` policies (the verifying ``security_barrier``
  view, read once per statement in an InitPlan), bound with a signed token;
* ``bench.items_plain``: the same rows, index and policy shape, calling a copy of the
  unsigned helper (the inlinable SQL function ``install`` creates without ``--signed``),
  bound with the plain id.

pgbench (``-M prepared``, 1 client, pipeline: binding + point select under one Sync, as
TenantPool sends them) runs 2 x K scripts, one per tenant and variant, mixed at random
in the same run, so machine noise hits both alike; per-variant average latency gives
the server's cost per statement and the throughput ratio. The tokens are made by the
library (pgbench cannot compute an HMAC) and valid for an hour. The Python part runs
two TenantPools (plain, signed) in interleaved one-second rounds. First, the server's
own cost per statement: a PL/pgSQL loop of point selects per variant, timed by the
backend's CPU time (when the server runs on this machine).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg
from psycopg import sql

from tenantguard import TenantPool, tenant
from tenantguard.admin import admin_connect
from tenantguard.bench.dataset import add_signed_shapes, build_dataset
from tenantguard.bench.pgbench import find_pgbench
from tenantguard.bench.run import _with
from tenantguard.core.signing import SigningKey, sign_context
from tenantguard.embedded import embedded_postgres

DB = "tg_signed_cost"
MAX_SCRIPTS = 128  # pgbench's limit on -f


def prepare(admin_dsn: str, tenants: int, rows: int) -> tuple[str, str, SigningKey]:
    """The scratch database; returns (its admin DSN, the app DSN, the signing key)."""
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    dsn = _with(admin_dsn, dbname=DB)
    with admin_connect(dsn, autocommit=True) as a:
        ds = build_dataset(a, tenants, rows)
        # bench.items signed, bench.items_plain the unsigned shape beside it.
        key = add_signed_shapes(a, ds)
    return dsn, _with(dsn, user=ds.app_role), key


_BLOCK = re.compile(
    r"SQL script \d+: (?P<file>\S+)\n(?:.*\n)*?.*?tps = (?P<tps>[0-9.]+)\)\n"
    r"(?:.*\n)*?.*?latency average = (?P<lat>[0-9.]+) ms",
)


def pgbench_rounds(
    binary: str, app_dsn: str, key: SigningKey, tenants: int, rows: int, rounds: int, seconds: int
) -> list[tuple[float, float]]:
    """Per round: (plain, signed) average latency in microseconds."""
    k = min(tenants, MAX_SCRIPTS // 2)
    picked = sorted({1 + i * tenants // k for i in range(k)})
    expires = int(time.time()) + 3600 + rounds * seconds
    out = []
    with tempfile.TemporaryDirectory(prefix="tg-signed-cost-") as tmp:
        files = []
        for t in picked:
            head = f"\\set k {(t - 1) * rows} + random(1, {rows})\n\\startpipeline\n"
            tail = "\\endpipeline\n"
            for variant, table, value in (
                ("plain", "bench.items_plain", str(t)),
                ("signed", "bench.items", sign_context(key, str(t), None, expires_at=expires)),
            ):
                path = Path(tmp) / f"{variant}_{t}.sql"
                path.write_text(
                    head + f"SELECT pg_catalog.set_config('app.tenant_id', '{value}', true), "
                    "pg_catalog.set_config('app.user_id', '', true);\n"
                    + f"SELECT tenant_id, id, amount FROM {table} WHERE id = :k;\n"
                    + tail
                )
                files.append(path)
        for _ in range(rounds):
            cmd = [binary, "--no-vacuum", "--protocol=prepared", "--client=1"]
            cmd += [f"--time={seconds}", *(f"--file={f}" for f in files), app_dsn]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"pgbench failed:\n{proc.stderr[-2000:]}")
            sums: dict[str, list[float]] = {"plain": [0.0, 0.0], "signed": [0.0, 0.0]}
            for m in _BLOCK.finditer(proc.stdout):
                variant = Path(m["file"]).name.split("_")[0]
                tps, lat = float(m["tps"]), float(m["lat"])
                sums[variant][0] += tps * lat  # weight each script's latency by its count
                sums[variant][1] += tps
            plain = 1000 * sums["plain"][0] / sums["plain"][1]
            signed = 1000 * sums["signed"][0] / sums["signed"][1]
            out.append((plain, signed))
    return out


_LOOP = """
CREATE OR REPLACE FUNCTION public.tg_signed_cost_loop(signed boolean, n int, t bigint, r int)
RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; k bigint; rec record;
BEGIN
  t0 := clock_timestamp();
  FOR i IN 1..n LOOP
    k := (t - 1) * r + 1 + (i % r);
    IF signed THEN
      SELECT tenant_id, id, amount INTO rec FROM bench.items WHERE id = k;
    ELSE
      SELECT tenant_id, id, amount INTO rec FROM bench.items_plain WHERE id = k;
    END IF;
    IF rec.tenant_id IS DISTINCT FROM t THEN RAISE EXCEPTION 'row % for tenant %', rec, t; END IF;
  END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
GRANT EXECUTE ON FUNCTION public.tg_signed_cost_loop(boolean, int, bigint, int) TO PUBLIC;
"""


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a local process (None when the server is not local)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_rounds(
    dsn: str, app_dsn: str, key: SigningKey, tenants: int, rows: int, rounds: int, n: int = 20000
) -> tuple[str, list[tuple[float, float]]]:
    """Per round: (plain, signed) server time per point select, in microseconds.

    Each statement runs in a PL/pgSQL loop with a cached plan (as a prepared statement
    runs), so the policy's InitPlan (the verification) runs once per statement. Measured
    as the backend's CPU time when the server is local (load on a shared machine
    inflates wall clock, much less CPU time), else as wall clock."""
    with psycopg.connect(dsn, autocommit=True) as a:
        a.execute(_LOOP)
    out = []
    with psycopg.connect(app_dsn, autocommit=True) as app:
        pid = app.info.backend_pid
        how = "backend CPU time" if _cpu_seconds(pid) is not None else "wall clock"
        for r in range(rounds):
            t = 1 + r * 997 % tenants
            got = {}
            for signed in (False, True) if r % 2 == 0 else (True, False):
                value = (
                    sign_context(key, str(t), None, expires_at=int(time.time()) + 600)
                    if signed
                    else str(t)
                )
                with app.transaction():
                    app.execute(
                        "SELECT pg_catalog.set_config('app.tenant_id', %s, true), "
                        "pg_catalog.set_config('app.user_id', '', true)",
                        (value,),
                    )
                    c0 = _cpu_seconds(pid)
                    row = app.execute(
                        "SELECT public.tg_signed_cost_loop(%s, %s, %s, %s)", (signed, n, t, rows)
                    ).fetchone()
                    c1 = _cpu_seconds(pid)
                assert row is not None
                got[signed] = (c1 - c0) * 1e6 / n if c0 is not None and c1 is not None else row[0]
            out.append((got[False], got[True]))
    return how, out


def python_rounds(
    app_dsn: str, key: SigningKey, tenants: int, rows: int, rounds: int
) -> tuple[list[float], list[float] | None]:
    """Per round (interleaved 1 s each): signed point selects per second / plain ones, and,
    when the server is local, plain / signed CPU per request (this client's CPU plus its
    backend's), which machine load distorts much less than throughput."""
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    with ExitStack() as stack:
        pools = {
            "plain": stack.enter_context(TenantPool(app_dsn, min_size=1, max_size=1)),
            "signed": stack.enter_context(
                TenantPool(app_dsn, min_size=1, max_size=1, signing_key=key)
            ),
        }
        queries = {
            "plain": "SELECT tenant_id, id, amount FROM bench.items_plain WHERE id = %s",
            "signed": "SELECT tenant_id, id, amount FROM bench.items WHERE id = %s",
        }
        pids = {}
        for name, pool in pools.items():
            with tenant(1), pool.connection() as conn:
                pids[name] = conn.info.backend_pid
        rnd = random.Random(7)

        def run(name: str) -> tuple[int, float | None]:
            pool, q, n = pools[name], queries[name], 0
            s0, c0 = _cpu_seconds(pids[name]), time.process_time()
            end = time.perf_counter() + 1.0
            while time.perf_counter() < end:
                t = rnd.randint(1, tenants)
                with tenant(t), pool.connection() as conn:
                    got = conn.execute(q, ((t - 1) * rows + rnd.randint(1, rows),)).fetchall()
                assert got and got[0][0] == t
                n += 1
            s1, c1 = _cpu_seconds(pids[name]), time.process_time()
            cpu = None if s0 is None or s1 is None else (s1 - s0 + c1 - c0) / n
            return n, cpu

        run("plain"), run("signed")  # warm both (prepared statements, caches, tokens)
        for r in range(rounds):
            order = ["plain", "signed"] if r % 2 == 0 else ["signed", "plain"]
            got = {name: run(name) for name in order}
            ratios.append(got["signed"][0] / got["plain"][0])
            plain_cpu, signed_cpu = got["plain"][1], got["signed"][1]
            if plain_cpu is not None and signed_cpu is not None:
                cpu_ratios.append(plain_cpu / signed_cpu)
    return ratios, cpu_ratios or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", help="admin DSN (default: an embedded PostgreSQL 18)")
    ap.add_argument("--tenants", type=int, default=10000)
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--pgbench-rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--python-rounds", type=int, default=15)
    ap.add_argument("--keep", action="store_true", help=f"keep the {DB} database")
    args = ap.parse_args()
    with ExitStack() as stack:
        admin = args.dsn or stack.enter_context(embedded_postgres())
        dsn, app_dsn, key = prepare(admin, args.tenants, args.rows)
        with psycopg.connect(dsn) as c:
            version = c.execute("SHOW server_version").fetchone()
        print(f"server {version[0] if version else '?'}, {args.tenants}x{args.rows} rows")
        how, got_server = server_rounds(dsn, app_dsn, key, args.tenants, args.rows, 7)
        print(f"server, point select in a PL/pgSQL loop (cached plan), {how}, 7 rounds:")
        deltas = [sig - plain for plain, sig in got_server]
        print(
            "  plain "
            + " ".join(f"{p:.1f}" for p, _ in got_server)
            + " us\n  signed "
            + " ".join(f"{s:.1f}" for _, s in got_server)
            + f" us\n  median: +{statistics.median(deltas):.1f} us per statement "
            f"({statistics.median([p for p, _ in got_server]):.1f} -> "
            f"{statistics.median([s for _, s in got_server]):.1f})"
        )
        binary = find_pgbench()
        if binary is None:
            print("pgbench: not found (install the PostgreSQL server package); skipped")
        elif args.pgbench_rounds > 0:
            got = pgbench_rounds(
                binary, app_dsn, key, args.tenants, args.rows, args.pgbench_rounds, args.seconds
            )
            print(f"pgbench, 1 client, prepared, {args.seconds} s rounds, both mixed per round:")
            for plain, signed in got:
                print(
                    f"  plain {plain:6.1f} us  signed {signed:6.1f} us  "
                    f"+{signed - plain:5.1f} us  ratio {plain / signed:.3f}"
                )
            deltas = [s - p for p, s in got]
            ratios = [p / s for p, s in got]
            print(
                f"  median: +{statistics.median(deltas):.1f} us per statement, "
                f"throughput ratio {statistics.median(ratios):.3f} "
                f"(range {min(ratios):.3f}-{max(ratios):.3f})"
            )
        ratios, cpu = python_rounds(app_dsn, key, args.tenants, args.rows, args.python_rounds)
        print(
            f"TenantPool point select, signed / plain, {len(ratios)} interleaved 1 s rounds:\n"
            f"  throughput: median {statistics.median(ratios):.3f} "
            f"(range {min(ratios):.3f}-{max(ratios):.3f})"
        )
        if cpu:
            print(
                f"  CPU per request (client + backend), plain / signed: median "
                f"{statistics.median(cpu):.3f} (range {min(cpu):.3f}-{max(cpu):.3f})"
            )
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB))
                )


if __name__ == "__main__":
    main()
