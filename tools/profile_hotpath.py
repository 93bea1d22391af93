"""Client CPU per point select, by code path (the figures quoted in README/BENCHMARKS).

    .venv/bin/python tools/profile_hotpath.py [--dsn SUPERUSER_DSN] [-n 5000]

Starts an embedded PostgreSQL when no DSN is given, builds a small bench dataset, and
prints microseconds of client CPU (process time) per operation for: raw psycopg with
a hand WHERE; psycopg's conn.pipeline() with set_config + query; the same through
psycopg_pool; TenantPool with the fast path; TenantPool forced onto conn.pipeline().
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import psycopg
from psycopg_pool import ConnectionPool

from tenantguard import TenantPool, tenant
from tenantguard.admin import admin_connect
from tenantguard.bench.dataset import build_dataset
from tenantguard.bench.run import _with
from tenantguard.embedded import embedded_postgres

Q_RAW = "SELECT tenant_id, id, amount FROM bench.items WHERE tenant_id = %s AND id = %s"
Q_RLS = "SELECT tenant_id, id, amount FROM bench.items WHERE id = %s"
BIND = "SELECT set_config('app.tenant_id', %s, true)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn")
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n = args.n
    with nullcontext(args.dsn) if args.dsn else embedded_postgres() as dsn0:
        with admin_connect(dsn0, autocommit=True) as a:
            ds = build_dataset(a, 200, 20)
        app, raw = _with(dsn0, user=ds.app_role), _with(dsn0, user=ds.raw_role)
        craw = psycopg.connect(raw, autocommit=True)
        capp = psycopg.connect(app, autocommit=True)
        ppool = ConnectionPool(app, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True)
        tg = TenantPool(app, min_size=1, max_size=1)
        tg_slow = TenantPool(app, min_size=1, max_size=1)

        def key(i: int) -> tuple[int, int]:
            t = 1 + i % 200
            return t, (t - 1) * 20 + 1 + i % 20

        def raw_() -> None:
            for i in range(n):
                craw.execute(Q_RAW, key(i)).fetchall()

        def pipe() -> None:
            for i in range(n):
                t, k = key(i)
                with capp.pipeline():
                    capp.execute(BIND, (str(t),))
                    cur = capp.execute(Q_RLS, (k,))
                cur.fetchall()

        def pool_pipe() -> None:
            for i in range(n):
                t, k = key(i)
                with ppool.connection() as c, c.pipeline():
                    c.execute(BIND, (str(t),))
                    cur = c.execute(Q_RLS, (k,))
                cur.fetchall()

        def tenantguard(p: TenantPool, fast: bool) -> None:
            for i in range(n):
                t, k = key(i)
                with tenant(t), p.connection() as c:
                    c._tg_fast = fast
                    c.execute(Q_RLS, (k,)).fetchall()

        paths = {
            "raw psycopg, hand WHERE": raw_,
            "conn.pipeline(): set_config + query": pipe,
            "psycopg_pool + conn.pipeline()": pool_pipe,
            "TenantPool (fast path)": lambda: tenantguard(tg, True),
            "TenantPool (conn.pipeline() fallback)": lambda: tenantguard(tg_slow, False),
        }
        res: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(args.rounds):
            for name, fn in paths.items():
                t0 = time.process_time()
                fn()
                res[name].append((time.process_time() - t0) / n * 1e6)
        print(f"client CPU per point select, median of {args.rounds} rounds x {n} ops")
        for name, vals in res.items():
            print(f"  {name:40s} {statistics.median(vals):7.1f} us")
        for c in (craw, capp):
            c.close()
        ppool.close()
        tg.close()
        tg_slow.close()


if __name__ == "__main__":
    main()
