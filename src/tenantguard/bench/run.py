"""``tenantguard bench``: build the dataset, run the groups, write BENCHMARKS.md.

Groups (each interleaved in rounds, ratios to the group's baseline in the same round):

* ``workloads``: every workload x {raw, naive, session_set, tenantguard,
  tenantguard_async} x clients; baseline ``raw``.
* ``guard``: point select, tenantguard with and without the checkin guard.
* ``signed``: point select at one client, signed contexts (``install --signed``) vs
  unsigned, in a second database (``<database>_signed``) holding both shapes; three times
  the rounds.
* ``pool``: point select at one client, tenantguard vs psycopg_pool with the ``WHERE``
  written by hand (the code tenantguard replaces): the pool model's target, in three
  times the rounds of the other groups (15 by default).
* ``index``: newest-N list, RLS on the table with vs without the composite index,
  and the hand-written WHERE; with EXPLAIN ANALYZE of both plans.
* ``pgbouncer``: point select, tenantguard direct vs through PgBouncer (transaction mode);
  the clients keep prepared statements when that PgBouncer can (1.21+), and when it
  cannot, a direct cell without them separates that cost from the hop's.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.admin import admin_connect
from tenantguard.bench.dataset import Dataset, add_signed_shapes, build_dataset, explain_list
from tenantguard.bench.harness import Cell, Group, ProcRuntime, count_round_trips, run_group
from tenantguard.bench.pgbench import find_pgbench
from tenantguard.bench.pgbench import measure as measure_pgbench
from tenantguard.bench.variants import VARIANTS, WORKLOADS, start_insert_ids
from tenantguard.drivers.psycopg import TenantPool
from tenantguard.errors import first_line
from tenantguard.testing.pgbouncer import PgBouncer, find_pgbouncer
from tenantguard.testing.rtproxy import RoundTripProxy

__all__ = ["BenchConfig", "run_bench"]


@dataclass
class BenchConfig:
    dsn: str  # superuser DSN
    tenants: int = 10_000
    rows_per_tenant: int = 100
    clients: list[int] = field(default_factory=lambda: [1, 4, 16])
    seconds: float = 0.5  # per cell per round
    rounds: int = 5
    output: Path = Path("bench-results")
    pgbouncer: bool = True
    pgbouncer_binary: str | None = None  # default: $TENANTGUARD_PGBOUNCER, else the installed one
    processes: bool = True  # also run point selects with one OS process per client
    pgbench: bool = True  # the server's share, with a C client, when pgbench is installed
    signed: bool = True  # the signed-context group, in a second database (<database>_signed)
    command: str = ""
    database: str | None = None  # default: tenantguard_bench_<tenants>x<rows> (reused)
    role_prefix: str = "tg_bench"  # roles <prefix>_app, _owner, _raw (and _keys: signed)


def _with(dsn: str, **changes: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.update(changes)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def _upstream(dsn: str) -> tuple[str, int]:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    return str(params.get("host") or "/var/run/postgresql"), int(params.get("port") or 5432)


def _runtime_for(
    cell: Cell,
    dsns: dict[str, str],
    raw_dsn: str,
    size: int,
    unprepared: frozenset[str] = frozenset({"direct-noprep"}),
    signing_key: Any = None,
) -> Any:
    """The runtime of *cell*; its clients run without prepared statements where its *via*
    is *unprepared* (through a PgBouncer < 1.21 in transaction mode, or direct as if)."""
    opts: dict[str, Any] = {"table": cell.table, "size": size, "raw_dsn": raw_dsn}
    dsn = dsns[cell.via]
    if cell.via == "signed":
        opts["signing_key"] = signing_key
    if cell.via.startswith("pgbouncer"):
        opts["raw_dsn"] = _with(raw_dsn, **_bouncer_params(dsn))
    if cell.via in unprepared:
        opts["conn_kw"] = {"prepare_threshold": None}
    if cell.mode == "processes":
        opts["size"] = 1  # each client process is a worker with its own pool of one
        return ProcRuntime(cell.variant, dsn, opts)
    return VARIANTS[cell.variant].factory(dsn, opts)


def _dataset(
    cfg: BenchConfig, db: str, stage: str, progress: Callable[[str, int, int], None] | None
) -> tuple[str, Dataset]:
    """Database *db* (created when missing, reused otherwise) with the bench dataset built
    in it: its admin DSN and the dataset."""
    with admin_connect(cfg.dsn, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    admin_dsn = _with(cfg.dsn, dbname=db)
    with admin_connect(admin_dsn, autocommit=True) as admin:
        ds = build_dataset(
            admin,
            cfg.tenants,
            cfg.rows_per_tenant,
            app_role=f"{cfg.role_prefix}_app",
            owner_role=f"{cfg.role_prefix}_owner",
            raw_role=f"{cfg.role_prefix}_raw",
            progress=(lambda d, t: progress(stage, d, t)) if progress else None,
        )
    return admin_dsn, ds


def _signed_database(
    cfg: BenchConfig, db: str, progress: Callable[[str, int, int], None] | None
) -> tuple[str, Any]:
    """The signed-context database (``<db>_signed``, reused): its app DSN and a live key."""
    admin_dsn, ds = _dataset(cfg, f"{db}_signed", "signed dataset", progress)
    with admin_connect(admin_dsn, autocommit=True) as admin:
        key = add_signed_shapes(admin, ds, f"{cfg.role_prefix}_owner", f"{cfg.role_prefix}_keys")
    return _with(admin_dsn, user=ds.app_role), key


def _bouncer_params(dsn: str) -> dict[str, str]:
    p = psycopg.conninfo.conninfo_to_dict(dsn)
    out = {"host": str(p["host"]), "port": str(p["port"])}
    if not out["host"].startswith("/"):
        out["sslmode"] = "disable"
    return out


def _local_server_pids(admin_dsn: str) -> list[int] | None:
    """The postmaster and all its children, for a server tenantguard started itself.

    Only the embedded server (a Unix socket in a ``tenantguard-*`` temporary directory)
    is ever pinned to a CPU: a server given with ``--dsn`` is left alone.
    """
    import os

    host = _upstream(admin_dsn)[0]
    if not host.startswith("/") or not os.path.basename(host).startswith("tenantguard-"):
        return None
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return None
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as c:
            backend = int(c.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
            with open(f"/proc/{backend}/status") as f:
                ppid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
    except (OSError, StopIteration, psycopg.Error):
        return None
    pids = [ppid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    if any(line == f"PPid:\t{ppid}\n" for line in f):
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


@contextmanager
def _server_on_cpu(admin_dsn: str, cpu: int, extra: list[int] | None = None) -> Iterator[bool]:
    """Run the (local) server, and *extra* processes, on one CPU: new backends inherit it."""
    import os

    pids = _local_server_pids(admin_dsn)
    if not pids:
        yield False
        return
    pids += extra or []
    every = os.sched_getaffinity(pids[0])
    try:
        for pid in pids:
            try:
                os.sched_setaffinity(pid, {cpu})
            except OSError:
                continue
        yield True
    finally:
        for pid in (_local_server_pids(admin_dsn) or pids) + (extra or []):
            try:
                os.sched_setaffinity(pid, every)
            except OSError:
                continue


def _is_unix(dsn: str) -> bool:
    return _upstream(dsn)[0].startswith("/")


def _same_transport(dsn: str) -> str:
    return "pgbouncer-unix" if _is_unix(dsn) else "pgbouncer"


def _other_transport(dsn: str) -> str:
    return "pgbouncer" if _is_unix(dsn) else "pgbouncer-unix"


def _server_rls_cost(
    app_dsn: str, raw_dsn: str, tenants: int, rows: int, n: int = 200
) -> dict[str, Any]:
    """Server-side execution time (EXPLAIN ANALYZE) of RLS vs hand-written WHERE, indexed table."""
    import random

    rnd = random.Random(5)
    out: dict[str, Any] = {}
    for workload, rls_q, raw_q in (
        (
            "select",
            "SELECT tenant_id, id, amount FROM bench.items WHERE id = %(k)s",
            "SELECT tenant_id, id, amount FROM bench.items WHERE tenant_id = %(t)s AND id = %(k)s",
        ),
        (
            "list",
            "SELECT tenant_id, id, amount FROM bench.items ORDER BY id DESC LIMIT 10",
            "SELECT tenant_id, id, amount FROM bench.items WHERE tenant_id = %(t)s "
            "ORDER BY id DESC LIMIT 10",
        ),
    ):
        times: dict[str, list[float]] = {"rls": [], "where": []}
        with (
            psycopg.connect(app_dsn, autocommit=True) as app,
            psycopg.connect(raw_dsn, autocommit=True) as raw,
        ):
            for _ in range(n):  # interleaved, same keys for both
                t = rnd.randint(1, tenants)
                k = (t - 1) * rows + rnd.randint(1, rows)
                for label, conn, q in (("rls", app, rls_q), ("where", raw, raw_q)):
                    with conn.transaction(force_rollback=True):
                        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(t),))
                        plan = conn.execute(
                            "EXPLAIN (ANALYZE, FORMAT JSON, TIMING OFF) " + q,
                            {"t": t, "k": k},
                        ).fetchone()[0]  # type: ignore[index]
                    times[label].append(float(plan[0]["Execution Time"]))
        rls, where = statistics.median(times["rls"]), statistics.median(times["where"])
        out[workload] = {"rls_ms": rls, "where_ms": where, "ratio": rls / where if where else None}
    return out


def _guard_cost(app_dsn: str, n: int = 20000, rounds: int = 7) -> dict[str, float]:
    """Client time of the checkin guard's clean path, measured directly (microseconds).

    The guard does no I/O on the clean path, so its cost is the Python work in
    ``_checkin`` (status checks, classifier results, counters) compared with the bare
    lease bookkeeping it replaces; interleaved rounds, median.
    """
    from tenantguard.core.context import tenant

    with TenantPool(app_dsn, min_size=1, max_size=1) as pool, tenant(1), pool.connection() as conn:
        conn.execute("SELECT 1")  # a real, clean request first
        st = conn._tg_state
        assert st is not None
        lease = st.lease
        on: list[float] = []
        off: list[float] = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                st.start_lease(lease)  # type: ignore[arg-type]
                pool._checkin(conn)
            on.append((time.perf_counter() - t0) / n * 1e6)
            t0 = time.perf_counter()
            for _ in range(n):
                st.start_lease(lease)  # type: ignore[arg-type]
                st.end_lease()
            off.append((time.perf_counter() - t0) / n * 1e6)
        st.start_lease(lease)  # type: ignore[arg-type]
    return {"guard_us": statistics.median(on), "bare_us": statistics.median(off)}


def _round_trips(
    dsns: dict[str, str], raw_dsn: str, tenants: int, rows: int
) -> dict[str, dict[str, float]]:
    host, port = _upstream(dsns["direct"])
    upstream: str | tuple[str, int] = (
        f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
    )
    out: dict[str, dict[str, float]] = {}
    with RoundTripProxy(upstream) as proxy:
        pdsn = _with(dsns["direct"], **proxy.conninfo())
        praw = _with(raw_dsn, **proxy.conninfo())
        for name in (
            "raw",
            "pool_where",
            "naive",
            "session_set",
            "tenantguard",
            "tenantguard_async",
        ):
            cell = Cell(name, "select", 1)
            rt = _runtime_for(cell, {"direct": pdsn}, praw, 1)
            try:
                out[name] = {}
                for w in WORKLOADS:
                    if VARIANTS[name].kind == "async":
                        out[name][w] = _async_rt(rt, w, proxy, tenants, rows)
                    else:
                        out[name][w] = count_round_trips(rt.session, w, proxy, tenants, rows)
            finally:
                rt.close()
    return out


def _async_rt(rt: Any, workload: str, proxy: RoundTripProxy, tenants: int, rows: int) -> float:
    import random

    rnd = random.Random(3)

    def key() -> tuple[int, int]:
        t = rnd.randint(1, tenants)
        return t, (t - 1) * rows + rnd.randint(1, rows)

    for _ in range(8):
        rt._call(rt.run_async(workload, *key()))
    time.sleep(0.05)
    proxy.reset()
    for _ in range(20):
        rt._call(rt.run_async(workload, *key()))
    time.sleep(0.05)
    return proxy.round_trips / 20


@contextmanager
def _maybe_bouncer(cfg: BenchConfig, ds: Dataset, admin_dsn: str) -> Iterator[PgBouncer | None]:
    binary = find_pgbouncer(cfg.pgbouncer_binary) if cfg.pgbouncer else None
    if binary is None:
        yield None
        return
    host, port = _upstream(admin_dsn)
    size = max(cfg.clients)
    with PgBouncer(
        host, port, users=[ds.app_role, ds.raw_role], pool_size=min(size, 8), binary=binary
    ) as pgb:
        yield pgb


def run_bench(
    cfg: BenchConfig,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run everything and return the results (also written to ``cfg.output``)."""
    started = time.time()
    with admin_connect(cfg.dsn, autocommit=True) as admin:
        server_version = str(admin.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    db = cfg.database or f"tenantguard_bench_{cfg.tenants}x{cfg.rows_per_tenant}"
    admin_dsn, ds = _dataset(cfg, db, "dataset", progress)
    with admin_connect(admin_dsn, autocommit=True) as admin:
        top = admin.execute("SELECT coalesce(max(id), 0) FROM bench.items").fetchone()
        start_insert_ids(int(top[0]) if top else 0)
    app_dsn = _with(admin_dsn, user=ds.app_role)
    raw_dsn = _with(admin_dsn, user=ds.raw_role)
    signed_dsn, signing_key = _signed_database(cfg, db, progress) if cfg.signed else (None, None)

    results: dict[str, Any] = {
        "meta": {
            "command": cfg.command,
            "server_version": server_version,
            "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, "
            f"{_cpus()} CPUs, Python {platform.python_version()}, psycopg {psycopg.__version__}",
            "dataset": {
                "tenants": cfg.tenants,
                "rows_per_tenant": cfg.rows_per_tenant,
                "rows": ds.rows,
            },
            "rounds": cfg.rounds,
            "seconds_per_cell": cfg.seconds,
            "clients": cfg.clients,
            "direct_transport": "unix socket" if _is_unix(app_dsn) else "tcp",
            "small_effect_rounds": 3 * cfg.rounds,  # the _SMALL_EFFECTS groups
        },
        "groups": {},
    }
    with ExitStack() as stack:
        bouncer = stack.enter_context(_maybe_bouncer(cfg, ds, admin_dsn))
        results["meta"]["pgbouncer"] = bouncer.info() if bouncer is not None else None
        dsns = {"direct": app_dsn, "direct-noprep": app_dsn}
        if signed_dsn is not None:
            dsns["signed"] = signed_dsn
        unprepared = frozenset({"direct-noprep"})
        if bouncer is not None:
            dsns["pgbouncer"] = _with(app_dsn, **bouncer.conninfo())
            dsns["pgbouncer-unix"] = _with(app_dsn, **bouncer.conninfo(unix=True))
            if not bouncer.keeps_prepared:
                unprepared |= {"pgbouncer", "pgbouncer-unix"}
        groups: list[Group] = []
        main_variants = [
            "raw",
            "pool_where",
            "naive",
            "session_set",
            "tenantguard",
            "tenantguard_async",
        ]
        for w in WORKLOADS:
            for c in cfg.clients:
                cells = [Cell(v, w, c) for v in main_variants]
                groups.append(Group(f"workloads/{w}/{c}", cells, cells[0]))
        split = cfg.processes and _local_server_pids(admin_dsn) is not None
        if cfg.processes:
            for c in cfg.clients:
                cells = [
                    Cell(v, "select", c, mode="processes")
                    for v in ("raw", "pool_where", "naive", "tenantguard")
                ]
                groups.append(Group(f"procs/select/{c}", cells, cells[0]))
        if split:  # app on CPU 0, database on CPU 1: as if on separate machines
            for c in cfg.clients:
                cells = [
                    Cell(v, "select", c, mode="processes", client_cpu=0)
                    for v in ("raw", "pool_where", "naive", "tenantguard")
                ]
                groups.append(Group(f"split/select/{c}", cells, cells[0]))
        cells = [Cell("pool_where", "select", 1), Cell("tenantguard", "select", 1)]
        groups.append(Group("pool/select/1", cells, cells[0]))
        if signed_dsn is not None:
            # Signed vs unsigned contexts, one database: bench.items (install --signed)
            # and bench.items_plain (the unsigned helper), the same rows and index.
            cells = [
                Cell("tenantguard", "select", 1, table="items_plain", via="signed"),
                Cell("tenantguard_signed", "select", 1, via="signed"),
            ]
            groups.append(Group("signed/select/1", cells, cells[0]))
        for c in cfg.clients[:2]:
            cells = [Cell("tenantguard", "select", c), Cell("tenantguard_noguard", "select", c)]
            groups.append(Group(f"guard/select/{c}", cells, cells[1]))
        for w in ("select", "list"):
            cells = [Cell("tg_where_bypass", w, 1), Cell("tenantguard", w, 1)]
            groups.append(Group(f"rls/{w}/1", cells, cells[0]))
            if split:  # the same, client on CPU 0 and server on CPU 1 (placement noise out)
                cells = [Cell(c.variant, w, 1, client_cpu=0) for c in cells]
                groups.append(Group(f"split-rls/{w}/1", cells, cells[0]))
        cells = [
            Cell("raw", "list", 1),
            Cell("tenantguard", "list", 1),
            Cell("tenantguard", "list", 1, table="items_noidx"),
        ]
        groups.append(Group("index/list/1", cells, cells[0]))
        if bouncer is not None:
            for c in cfg.clients[:2]:
                # Same transport as direct (Unix socket to the embedded server; TCP when
                # --dsn is TCP), PgBouncer's usual TCP listener, and, when this PgBouncer
                # cannot keep prepared statements, direct without them: what each costs.
                cells = [
                    Cell("tenantguard", "select", c),
                    Cell("tenantguard", "select", c, via=_same_transport(app_dsn)),
                    Cell("tenantguard", "select", c, via=_other_transport(app_dsn)),
                ]
                if not bouncer.keeps_prepared:
                    cells.append(Cell("tenantguard", "select", c, via="direct-noprep"))
                groups.append(Group(f"pgbouncer/select/{c}", cells, cells[0]))
                if split:  # clients on CPU 0; server and PgBouncer on CPU 1
                    cells = [replace(x, client_cpu=0) for x in cells]
                    groups.append(Group(f"split-pgbouncer/select/{c}", cells, cells[0]))

        total = sum(
            len(g.cells) * (cfg.rounds * 3 if g.name.startswith(_SMALL_EFFECTS) else cfg.rounds)
            for g in groups
        )
        done = [0]

        def tick() -> None:
            done[0] += 1
            if progress:
                progress("measure", done[0], total)

        for g in groups:
            size = max(c.clients for c in g.cells)
            runtimes: dict[Cell, Any] = {}
            pinned = (
                _server_on_cpu(admin_dsn, 1, [bouncer.proc.pid] if bouncer and bouncer.proc else [])
                if g.name.startswith("split")
                else nullcontext(False)
            )
            with pinned:
                try:
                    for cell in g.cells:
                        runtimes[cell] = _runtime_for(
                            cell, dsns, raw_dsn, size, unprepared, signing_key
                        )
                    res = run_group(
                        g,
                        runtimes,
                        # small effects (the guard's ~1%, RLS's few us against a 1-client
                        # latency) need more rounds than the others to rise above noise
                        rounds=cfg.rounds * 3 if g.name.startswith(_SMALL_EFFECTS) else cfg.rounds,
                        seconds=cfg.seconds,
                        tenants=cfg.tenants,
                        rows=cfg.rows_per_tenant,
                        on_cell=tick,
                    )
                finally:
                    for rt in runtimes.values():
                        rt.close()
            summaries = [r.summary() for r in res]
            for r, summary in zip(res, summaries, strict=True):
                summary["mode"] = r.cell.mode
                if r.cell.via.startswith("pgbouncer"):
                    summary["same_transport"] = r.cell.via == _same_transport(app_dsn)
            results["groups"][g.name] = {"baseline": g.baseline.label, "cells": summaries}
        if progress:
            progress("round trips", 0, 1)
        results["round_trips"] = _round_trips(dsns, raw_dsn, cfg.tenants, cfg.rows_per_tenant)
    with psycopg.connect(app_dsn, autocommit=True) as app:
        mid = max(1, cfg.tenants // 2)
        results["explain"] = {
            "items": explain_list(app, "items", mid),
            "items_noidx": explain_list(app, "items_noidx", mid),
        }
    results["guard_cost"] = _guard_cost(app_dsn)
    results["server_rls_cost"] = _server_rls_cost(
        app_dsn, raw_dsn, cfg.tenants, cfg.rows_per_tenant
    )
    share = _pgbench_share(cfg, raw_dsn, app_dsn, progress)
    if share is not None:
        results["pgbench"] = share
    results["meta"]["duration_s"] = round(time.time() - started, 1)
    results["targets"] = evaluate_targets(results)
    return results


def _pgbench_share(
    cfg: BenchConfig,
    raw_dsn: str,
    app_dsn: str,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any] | None:
    """The server's share with pgbench; None when not installed, ``{"error": ..}`` when it
    fails (the run's last step: the other results are kept)."""
    pgbench = find_pgbench() if cfg.pgbench else None
    if pgbench is None:
        return None
    if progress:
        progress("pgbench", 0, 1)
    try:
        return measure_pgbench(
            pgbench,
            {"raw": raw_dsn, "app": app_dsn},
            cfg.clients,
            rounds=cfg.rounds,
            seconds=max(1, round(cfg.seconds * 2)),
            tenants=cfg.tenants,
            rows=cfg.rows_per_tenant,
        )
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return {"error": first_line(exc)}


# Groups whose effect is small against the noise, or whose target asks for at least 15
# rounds (the pool model's one-client target), run three times the rounds.
_SMALL_EFFECTS = ("guard/", "rls/", "split-rls/", "pool/", "signed/")


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def _cell(results: dict[str, Any], group: str, label: str) -> dict[str, Any] | None:
    g = results["groups"].get(group)
    if g is None:
        return None
    for c in g["cells"]:
        if c["label"] == label:
            return dict(c)
    return None


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Check the project's performance targets against one run's results."""
    out: list[dict[str, Any]] = []
    clients = results["meta"]["clients"]

    def add(name: str, value: float | None, goal: str, ok: bool | None) -> None:
        out.append({"target": name, "value": value, "goal": goal, "met": ok})

    def select_targets(prefix: str, how: str) -> None:
        """Point select vs raw (the target), vs naive (target) and vs a plain pool (info)."""
        for c in clients:
            tg = _cell(results, f"{prefix}/select/{c}", "tenantguard")
            if not tg or tg["ratio_median"] is None:
                continue
            ratio = tg["ratio_median"]
            add(f"point select vs raw, {c} {how}", ratio, ">= 0.85x", ratio >= 0.85)
            naive = _cell(results, f"{prefix}/select/{c}", "naive")
            if naive and naive["ratio_median"]:
                r = ratio / naive["ratio_median"]
                add(f"point select vs naive, {c} {how}", r, ">= 2x", r >= 2.0)
            pool = _cell(results, f"{prefix}/select/{c}", "pool_where")
            if pool and pool["ratio_median"]:
                r = ratio / pool["ratio_median"]
                add(f"(info) point select vs psycopg_pool + WHERE, {c} {how}", r, "-", None)

    select_targets("workloads", "client(s)")
    rounds = results["meta"].get("small_effect_rounds", "?")
    for group, label, name in (
        ("pool/select/1", "tenantguard", "point select vs psycopg_pool + WHERE"),
        ("signed/select/1", "tenantguard_signed via signed", "signed point select vs unsigned"),
    ):
        cell = _cell(results, group, label)
        if cell and cell["ratio_median"] is not None:
            ratio = cell["ratio_median"]
            add(f"{name}, 1 client, median of {rounds} rounds", ratio, ">= 0.85x", ratio >= 0.85)
    rt = results.get("round_trips", {}).get("tenantguard", {}).get("select")
    if rt is not None:
        add("round trips per point select", rt, "== 1", rt == 1.0)
    rows = results["meta"]["dataset"]["rows"]
    for prefix, how in (("rls", ""), ("split-rls", ", client and server on separate CPUs")):
        for w in ("select", "list"):
            cell = _cell(results, f"{prefix}/{w}/1", "tenantguard")
            if cell and cell["ratio_median"]:
                slow = 1 / cell["ratio_median"]  # time per op, RLS / hand WHERE, same client path
                add(
                    f"RLS with index vs hand WHERE, {w}, {rows:,} rows{how}",
                    slow,
                    "<= 1.1x",
                    slow <= 1.1,
                )
    cost = results.get("server_rls_cost", {})
    for w in ("select", "list"):
        if w in cost and cost[w]["ratio"] is not None:
            add(f"(info) executor time only, RLS / hand WHERE, {w}", cost[w]["ratio"], "-", None)
    for prefix, how in (
        ("procs", "client process(es)"),
        ("split", "client process(es), app on CPU 0 and database on CPU 1"),
    ):
        select_targets(prefix, how)
    for c, prefix, how in [
        (c, p, h)
        for p, h in (
            ("pgbouncer", ""),
            ("split-pgbouncer", ", clients and servers on separate CPUs"),
        )
        for c in clients[:2]
    ]:
        group = results["groups"].get(f"{prefix}/select/{c}")
        cells = {x["label"]: x for x in group["cells"]} if group else {}
        # The target compares like with like: PgBouncer on the same transport as direct.
        same = [x for k, x in cells.items() if "via pgbouncer" in k and x.get("same_transport")]
        legacy = cells.get("tenantguard via pgbouncer")  # results from before the split
        pgb = same[0] if same else legacy
        if pgb and pgb["ratio_median"] is not None:
            add(
                f"PgBouncer vs direct, same transport, {c} client(s){how}",
                pgb["ratio_median"],
                ">= 0.9x",
                pgb["ratio_median"] >= 0.9,
            )
            for k, x in cells.items():
                if x is pgb or x["ratio_median"] is None or k == "tenantguard":
                    continue
                add(f"(info) {k} vs direct, {c} client(s){how}", x["ratio_median"], "-", None)
            every = [x for k, x in cells.items() if "via pgbouncer" in k]
            n = sum(x["cross_tenant_rows"] for x in every)
            add(f"cross-tenant rows via PgBouncer, {c} client(s){how}", n, "== 0", n == 0)
        if prefix != "pgbouncer":
            continue
        g = _cell(results, f"guard/select/{c}", "tenantguard")
        if g and g["ratio_median"] is not None:
            add(
                f"(info) guard on/off throughput ratio, {c} client(s)", g["ratio_median"], "-", None
            )
    gc = results.get("guard_cost")
    tg1 = _cell(results, f"workloads/select/{clients[0]}", "tenantguard")
    if gc and tg1 and tg1["throughput_median"]:
        # The guard's extra client time per request over the request's own time.
        request_us = 1e6 / tg1["throughput_median"] * tg1["clients"]
        pct = (gc["guard_us"] - gc["bare_us"]) / request_us * 100
        add(
            f"checkin guard cost, clean path ({gc['guard_us'] - gc['bare_us']:.2f} us of "
            f"{request_us:.0f} us per request)",
            pct,
            "<= 3%",
            pct <= 3.0,
        )
    cross = sum(c["cross_tenant_rows"] for g in results["groups"].values() for c in g["cells"])
    add("cross-tenant rows, all variants", cross, "== 0", cross == 0)
    return out


def save(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    return path
