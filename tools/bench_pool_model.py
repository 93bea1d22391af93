"""What the pool model's defences cost at one client: side by side, interleaved rounds.

Point selects on TENANTS x 100 rows through:

* ``pool_where``: psycopg_pool with a hand-written ``WHERE tenant_id = %s`` on a copy of
  the table without row level security (the code tenantguard replaces), as the runtime
  role;
* ``tenantguard``: ``TenantPool`` as shipped (binding + pinned role and search_path,
  lease ownership checks, the checkin guard);
* ``tenantguard unpinned``: the same with ``pin_session=False``.

Each round runs every variant for ``--duration`` seconds, in a rotating order; the
report is the median over rounds of each variant's ops/s divided by ``pool_where``'s in
the same round. With the server on this machine it also reports the server's CPU time per
request (each variant's one backend, read from ``/proc/<pid>/stat``): unlike throughput,
that does not depend on what else the machine is running. Bounded: rounds x variants x duration seconds, loopback or a Unix socket.

With ``--threads N`` each cell runs N client threads on the shared pools (``--pool-size``
connections each, default 4) and reports the client's CPU per request (every thread) in
place of the server's.

    .venv/bin/python tools/bench_pool_model.py --rounds 15 --duration 1
    .venv/bin/python tools/bench_pool_model.py --rounds 7 --duration 2 --threads 16
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from tenantguard import TenantPool, tenant
from tenantguard.admin import install, protect
from tenantguard.core.sqlbuild import InstallSpec
from tenantguard.embedded import embedded_postgres

APP, OWNER = "tgbench_app", "tgbench_owner"


def _with(dsn: str, **changes: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.update(changes)
    return psycopg.conninfo.make_conninfo(**params)


def setup(admin_dsn: str, tenants: int, policy_shapes: bool = False) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        install(conn, InstallSpec(app_role=APP, owner_role=OWNER))
        conn.execute("DROP TABLE IF EXISTS public.items")
        conn.execute(
            "CREATE TABLE public.items (tenant_id bigint NOT NULL, id bigint NOT NULL, "
            "amount int NOT NULL, PRIMARY KEY (tenant_id, id))"
        )
        conn.execute(
            "INSERT INTO public.items SELECT t, t * 1000 + r, r "
            "FROM generate_series(1, %s) t, generate_series(1, 100) r",
            (tenants,),
        )
        conn.execute(sql.SQL("ALTER TABLE public.items OWNER TO {}").format(sql.Identifier(OWNER)))
        protect(conn, ["public.items"])
        conn.execute(sql.SQL("GRANT SELECT ON public.items TO {}").format(sql.Identifier(APP)))
        conn.execute("DROP TABLE IF EXISTS public.items_plain")
        conn.execute("CREATE TABLE public.items_plain AS SELECT * FROM public.items")
        conn.execute("ALTER TABLE public.items_plain ADD PRIMARY KEY (tenant_id, id)")
        conn.execute(
            sql.SQL("GRANT SELECT ON public.items_plain TO {}").format(sql.Identifier(APP))
        )
        conn.execute("ANALYZE public.items")
        conn.execute("ANALYZE public.items_plain")
        if policy_shapes:
            _policy_shapes(conn)


#: --policy-shapes: the same rows under other policy shapes, each read through TenantPool.
SHAPES = {
    # One permissive policy (no RESTRICTIVE guard): one InitPlan instead of two.
    "items_single": [
        "CREATE POLICY p ON public.items_single USING ({pred}) WITH CHECK ({pred})",
    ],
    # The RESTRICTIVE guard alone decides; the permissive policy admits every row.
    "items_guard_true": [
        "CREATE POLICY p ON public.items_guard_true USING (true) WITH CHECK (true)",
        "CREATE POLICY g ON public.items_guard_true AS RESTRICTIVE USING ({pred}) "
        "WITH CHECK ({pred})",
    ],
    # The pair, with a helper that reads the setting once (COALESCE(NULLIF(..), fail)).
    "items_onecall": [
        "CREATE POLICY p ON public.items_onecall USING ({pred1}) WITH CHECK ({pred1})",
        "CREATE POLICY g ON public.items_onecall AS RESTRICTIVE USING ({pred1}) "
        "WITH CHECK ({pred1})",
    ],
}
_PRED = "tenant_id = (SELECT tenantguard.current_tenant()::bigint)"
_PRED1 = "tenant_id = (SELECT tenantguard.current_tenant_onecall()::bigint)"


def _policy_shapes(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "CREATE OR REPLACE FUNCTION tenantguard.current_tenant_onecall() RETURNS text "
        "LANGUAGE sql STABLE PARALLEL SAFE AS $$SELECT COALESCE(NULLIF("
        "pg_catalog.current_setting('app.tenant_id', true), ''), "
        "tenantguard._fail('app.tenant_id', 'tenant'))$$"
    )
    conn.execute(
        sql.SQL("GRANT EXECUTE ON FUNCTION tenantguard.current_tenant_onecall() TO {}").format(
            sql.Identifier(APP)
        )
    )
    for table, policies in SHAPES.items():
        ident = sql.Identifier("public", table)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM public.items").format(ident))
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (tenant_id, id)").format(ident))
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(ident, sql.Identifier(OWNER)))
        conn.execute(
            sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY").format(
                ident
            )
        )
        for text in policies:
            conn.execute(text.format(pred=_PRED, pred1=_PRED1).encode())
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(ident, sql.Identifier(APP)))
        conn.execute(sql.SQL("ANALYZE {}").format(ident))


Op = Callable[[int], None]
_TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float | None:
    """Seconds of CPU (user + system) the server process *pid* has used, if local."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


@contextlib.contextmanager
def variants(
    admin_dsn: str, size: int = 1, policy_shapes: bool = False
) -> Iterator[dict[str, tuple[Op, Callable[[], int]]]]:
    app_dsn = _with(admin_dsn, user=APP)
    kw: dict[str, Any] = {"autocommit": True}
    sizes = {"min_size": size, "max_size": size}
    plain: ConnectionPool[Any] = ConnectionPool(app_dsn, kwargs=kw, **sizes)
    plain.wait()
    pinned = TenantPool(app_dsn, tenant_kind="bigint", **sizes)
    unpinned = TenantPool(app_dsn, tenant_kind="bigint", pin_session=False, **sizes)
    pinned.pool.wait()
    unpinned.pool.wait()
    q_where = "SELECT id, amount FROM public.items_plain WHERE tenant_id = %s AND id = %s"
    q_rls = "SELECT id, amount FROM public.items WHERE id = %s"  # RLS adds the tenant

    def pid_of(pool: Any) -> Callable[[], int]:
        def pid() -> int:
            with contextlib.ExitStack() as stack:
                if isinstance(pool, TenantPool):
                    stack.enter_context(tenant(1))
                conn = stack.enter_context(pool.connection())
                return int(conn.info.backend_pid)

        return pid

    def op_where(t: int) -> None:
        with plain.connection() as conn:
            conn.execute(q_where, (t, t * 1000 + 7)).fetchall()

    def op_tg(pool: TenantPool, query: str = q_rls) -> Op:
        def op(t: int) -> None:
            with tenant(t), pool.connection() as conn:
                conn.execute(query, (t * 1000 + 7,)).fetchall()

        return op

    found: dict[str, tuple[Op, Callable[[], int]]] = {
        "pool_where": (op_where, pid_of(plain)),
        "tenantguard": (op_tg(pinned), pid_of(pinned)),
        "tenantguard unpinned": (op_tg(unpinned), pid_of(unpinned)),
    }
    shaped: list[TenantPool] = []
    if policy_shapes:  # each on its own pool: one backend each, for its server CPU
        for table in SHAPES:
            pool = TenantPool(app_dsn, tenant_kind="bigint", **sizes)
            pool.pool.wait()
            shaped.append(pool)
            query = q_rls.replace("public.items", f"public.{table}")
            found[f"tenantguard {table}"] = (op_tg(pool, query), pid_of(pool))
    try:
        yield found
    finally:
        plain.close()
        pinned.close()
        unpinned.close()
        for pool in shaped:
            pool.close()


def measure(
    op: Op, pid: int, tenants: int, duration: float, rnd: random.Random
) -> tuple[float, int, float | None]:
    """(ops/s, ops, server CPU seconds or None) for one cell."""
    n = 0
    for _ in range(50):  # warm up
        op(rnd.randint(1, tenants))
    cpu0 = backend_cpu(pid)
    end = time.perf_counter() + duration
    start = time.perf_counter()
    while time.perf_counter() < end:
        op(rnd.randint(1, tenants))
        n += 1
    elapsed = time.perf_counter() - start
    cpu1 = backend_cpu(pid)
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return n / elapsed, n, cpu


def measure_threads(
    op: Op, threads: int, tenants: int, duration: float, seed: int
) -> tuple[float, int, float]:
    """(ops/s, ops, client CPU seconds of every thread) for one cell of *threads* clients."""
    counts = [0] * threads
    start_line = threading.Barrier(threads + 1)
    stop = threading.Event()

    def client(i: int) -> None:
        rnd = random.Random(seed * 1000 + i)
        for _ in range(20):  # warm up
            op(rnd.randint(1, tenants))
        start_line.wait()
        while not stop.is_set():
            op(rnd.randint(1, tenants))
            counts[i] += 1

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    start_line.wait(60)
    cpu0, start = time.process_time(), time.perf_counter()
    time.sleep(duration)
    stop.set()
    for w in workers:
        w.join(60)
    elapsed = time.perf_counter() - start
    return sum(counts) / elapsed, sum(counts), time.process_time() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", help="superuser DSN; default: embedded PostgreSQL")
    ap.add_argument("--tenants", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1, help="client threads per cell")
    ap.add_argument("--pool-size", type=int, default=None, help="default: 1, or 4 with threads")
    ap.add_argument(
        "--policy-shapes",
        action="store_true",
        help="also read copies of the table under other policy shapes (see SHAPES)",
    )
    args = ap.parse_args()
    size = args.pool_size or (4 if args.threads > 1 else 1)
    with contextlib.ExitStack() as stack:
        dsn = args.dsn or stack.enter_context(embedded_postgres(prefix="tg-bench-pm-"))
        setup(dsn, args.tenants, args.policy_shapes)
        rnd = random.Random(7)
        ratios: dict[str, list[float]] = {}
        raw: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        count: dict[str, int] = {}
        with variants(dsn, size, args.policy_shapes) as ops:
            names = list(ops)
            pids = {name: ops[name][1]() for name in names}
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                if args.threads > 1:
                    got = {
                        name: measure_threads(
                            ops[name][0], args.threads, args.tenants, args.duration, r
                        )
                        for name in order
                    }
                else:
                    got = {
                        name: measure(ops[name][0], pids[name], args.tenants, args.duration, rnd)
                        for name in order
                    }
                for name, (v, n, c) in got.items():
                    raw.setdefault(name, []).append(v)
                    ratios.setdefault(name, []).append(v / got["pool_where"][0])
                    count[name] = count.get(name, 0) + n
                    if c is not None:
                        cpu.setdefault(name, []).append(c)
        with psycopg.connect(dsn) as conn:
            version = conn.info.server_version
    clients = "1 client" if args.threads == 1 else f"{args.threads} client threads"
    print(
        f"server {version}, {args.tenants} tenants x 100 rows, {clients}, pools of {size}, "
        f"{args.rounds} rounds x {args.duration}s per variant"
    )
    where = "server" if args.threads == 1 else "client"
    print(
        "| variant | median ops/s | median ratio to pool_where | min-max ratio "
        f"| {where} CPU per request |"
    )
    print("|---|---|---|---|---|")
    for name in names:
        rs = ratios[name]
        per = f"{sum(cpu[name]) / count[name] * 1e6:.1f} us" if name in cpu else "n/a"
        print(
            f"| {name} | {statistics.median(raw[name]):.0f} | {statistics.median(rs):.3f}x "
            f"| {min(rs):.3f}-{max(rs):.3f}x | {per} |"
        )


if __name__ == "__main__":
    main()
