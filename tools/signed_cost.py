"""What signed tenant contexts cost: server time per statement (pgbench) and the Python
point select, signed vs unsigned, side by side in one database and one run.

    .venv/bin/python tools/signed_cost.py [--dsn ADMIN_DSN] [--tenants 1000] [--rows 100]
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
two TenantPools (plain, signed) in interleaved one-second rounds.
"""

from __future__ import annotations

import argparse
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
from tenantguard.admin import admin_connect, create_key, install, protect
from tenantguard.bench.dataset import build_dataset
from tenantguard.bench.pgbench import find_pgbench
from tenantguard.bench.run import _with
from tenantguard.core.names import QualifiedName
from tenantguard.core.signing import sign_context
from tenantguard.core.sqlbuild import (
    InstallSpec,
    ProtectSpec,
    _helper_sql,
    protect_statements,
    render,
)
from tenantguard.embedded import embedded_postgres

DB = "tg_signed_cost"
MAX_SCRIPTS = 128  # pgbench's limit on -f


def prepare(admin_dsn: str, tenants: int, rows: int) -> tuple[str, str, object]:
    """The scratch database; returns (its admin DSN, the app DSN, the signing key)."""
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    dsn = _with(admin_dsn, dbname=DB)
    with admin_connect(dsn, autocommit=True) as a:
        ds = build_dataset(a, tenants, rows)
        # The unsigned shape, kept beside the signed one: a copy of the plain helper...
        a.execute(_helper_sql("tenantguard", "plain_tenant", "app.tenant_id", "tenant"))
        a.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION tenantguard.plain_tenant() TO {}").format(
                sql.Identifier(ds.app_role)
            )
        )
        # ...and the same table and policies calling it.
        a.execute("CREATE TABLE bench.items_plain (LIKE bench.items INCLUDING ALL)")
        a.execute("INSERT INTO bench.items_plain SELECT * FROM bench.items")
        spec = ProtectSpec(QualifiedName("bench", "items_plain"), pk_columns=("id",))
        with a.transaction():
            for stmt in protect_statements(spec):
                text = render(stmt).replace('"current_tenant"', '"plain_tenant"')
                if not text.startswith("CREATE INDEX"):  # LIKE ... INCLUDING ALL has it
                    a.execute(sql.SQL(text))  # type: ignore[arg-type]
        a.execute(
            sql.SQL("GRANT SELECT ON bench.items_plain TO {}").format(sql.Identifier(ds.app_role))
        )
        a.execute("VACUUM (ANALYZE) bench.items_plain")
        # Now signing: bench.items' policies become the verifying ones.
        install(
            a,
            InstallSpec(app_role=ds.app_role, owner_role="tg_bench_owner", signed=True),
        )
        protect(a, ["bench.items"])
        key = create_key(a)
    return dsn, _with(dsn, user=ds.app_role), key


_BLOCK = re.compile(
    r"SQL script \d+: (?P<file>\S+)\n(?:.*\n)*?.*?tps = (?P<tps>[0-9.]+)\)\n"
    r"(?:.*\n)*?.*?latency average = (?P<lat>[0-9.]+) ms",
)


def pgbench_rounds(
    binary: str, app_dsn: str, key: object, tenants: int, rows: int, rounds: int, seconds: int
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
                ("signed", "bench.items", sign_context(key, str(t), None, expires_at=expires)),  # type: ignore[arg-type]
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


def python_rounds(app_dsn: str, key: object, tenants: int, rows: int, rounds: int) -> list[float]:
    """Per round: signed point selects per second / plain ones (interleaved 1 s each)."""
    ratios = []
    with ExitStack() as stack:
        pools = {
            "plain": stack.enter_context(TenantPool(app_dsn, min_size=1, max_size=1)),
            "signed": stack.enter_context(
                TenantPool(app_dsn, min_size=1, max_size=1, signing_key=key)  # type: ignore[arg-type]
            ),
        }
        queries = {
            "plain": "SELECT tenant_id, id, amount FROM bench.items_plain WHERE id = %s",
            "signed": "SELECT tenant_id, id, amount FROM bench.items WHERE id = %s",
        }
        rnd = random.Random(7)

        def run(name: str) -> float:
            pool, q, n = pools[name], queries[name], 0
            end = time.perf_counter() + 1.0
            while time.perf_counter() < end:
                t = rnd.randint(1, tenants)
                with tenant(t), pool.connection() as conn:
                    got = conn.execute(q, ((t - 1) * rows + rnd.randint(1, rows),)).fetchall()
                assert got and got[0][0] == t
                n += 1
            return n

        run("plain"), run("signed")  # warm both (prepared statements, caches, tokens)
        for r in range(rounds):
            order = ["plain", "signed"] if r % 2 == 0 else ["signed", "plain"]
            got = {name: run(name) for name in order}
            ratios.append(got["signed"] / got["plain"])
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", help="admin DSN (default: an embedded PostgreSQL 18)")
    ap.add_argument("--tenants", type=int, default=1000)
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
        binary = find_pgbench()
        if binary is None:
            print("pgbench: not found (install the PostgreSQL server package); skipped")
        else:
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
        ratios = python_rounds(app_dsn, key, args.tenants, args.rows, args.python_rounds)
        print(
            f"TenantPool point select, signed / plain, {len(ratios)} interleaved 1 s rounds: "
            f"median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})"
        )
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB))
                )


if __name__ == "__main__":
    main()
