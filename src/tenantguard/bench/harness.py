"""The benchmark harness: interleaved rounds, ratios to the baseline, round-trip counts.

Variants run in rounds (A B C A B C ...), each cell for a fixed wall-clock slice, so a
noisy neighbour hits every variant alike. Reported per group: the median of per-round
throughput ratios to the group's baseline, p50/p99 latency and throughput.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenantguard.bench.variants import VARIANTS

__all__ = ["Cell", "CellResult", "Group", "ProcRuntime", "count_round_trips", "run_group"]


@dataclass(frozen=True)
class Cell:
    variant: str
    workload: str
    clients: int
    table: str = "items"
    via: str = "direct"  # or "pgbouncer", "pgbouncer-unix", "direct-noprep"
    mode: str = "threads"  # or "processes": one client per OS process (own pool each)
    client_cpu: int | None = None  # pin the client processes (or client threads) to this CPU

    @property
    def label(self) -> str:
        extra = "" if self.table == "items" else f" [{self.table}]"
        via = {
            "direct": "",
            "direct-noprep": " (unprepared)",
            "pgbouncer": " via pgbouncer (tcp)",
            "pgbouncer-unix": " via pgbouncer (unix)",
        }.get(self.via, f" via {self.via}")
        return f"{self.variant}{extra}{via}"


@dataclass
class CellResult:
    cell: Cell
    throughputs: list[float] = field(default_factory=list)  # ops/s per round
    latencies_ms: list[float] = field(default_factory=list)
    ops: int = 0
    cpu_s: float = 0.0  # client CPU (thread time) spent in the measured loops
    cross_tenant_rows: int = 0
    errors: int = 0
    ratios: list[float] = field(default_factory=list)  # per-round, to the baseline

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return lat[min(len(lat) - 1, int(p * len(lat)))]

        return {
            "variant": self.cell.variant,
            "workload": self.cell.workload,
            "clients": self.cell.clients,
            "table": self.cell.table,
            "via": self.cell.via,
            "label": self.cell.label,
            "ops": self.ops,
            "cpu_us_per_op": (self.cpu_s / self.ops * 1e6) if self.ops else None,
            "throughput_median": statistics.median(self.throughputs) if self.throughputs else 0.0,
            "throughput_rounds": self.throughputs,
            "ratio_median": statistics.median(self.ratios) if self.ratios else None,
            "ratio_rounds": self.ratios,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "cross_tenant_rows": self.cross_tenant_rows,
            "errors": self.errors,
        }


@dataclass
class Group:
    """Cells compared with each other; ``baseline`` is the cell ratios are taken to."""

    name: str
    cells: list[Cell]
    baseline: Cell


def _keys(rnd: random.Random, tenants: int, rows: int) -> tuple[int, int]:
    tid = rnd.randint(1, tenants)
    return tid, (tid - 1) * rows + rnd.randint(1, rows)


Run = tuple[
    int, float, list[float], int, int, float
]  # ops, wall s, latencies, cross, errors, cpu s


def _timed_loop(
    session: Any,
    workload: str,
    rnd: random.Random,
    tenants: int,
    rows: int,
    end: float,
    cpu_clock: Callable[[], float],
) -> tuple[int, list[float], int, int, float]:
    """Run *workload* until *end* (perf_counter): (ops, latencies ms, cross-tenant rows,
    errors, CPU seconds by *cpu_clock*)."""
    lats: list[float] = []
    n = cross = errs = 0
    cpu0 = cpu_clock()
    while True:
        tid, key = _keys(rnd, tenants, rows)
        t0 = time.perf_counter()
        if t0 >= end:
            break
        try:
            got = session.run(workload, tid, key)
        except Exception:
            errs += 1
            continue
        lats.append((time.perf_counter() - t0) * 1000)
        cross += sum(1 for r in got if r[0] != tid)
        n += 1
    return n, lats, cross, errs, cpu_clock() - cpu0


def _run_sync(runtime: Any, cell: Cell, seconds: float, tenants: int, rows: int, seed: int) -> Run:
    sessions = [runtime.session() for _ in range(cell.clients)]
    barrier = threading.Barrier(cell.clients + 1)
    out: list[tuple[int, list[float], int, int, float]] = [(0, [], 0, 0, 0.0)] * cell.clients
    stop_at = [0.0]

    def client(i: int) -> None:
        if cell.client_cpu is not None:  # this thread only (Linux affinity is per thread)
            os.sched_setaffinity(0, {cell.client_cpu})
        rnd = random.Random(seed * 1000 + i)
        barrier.wait()
        # this thread's CPU only: its client code and its share of the pool
        out[i] = _timed_loop(
            sessions[i], cell.workload, rnd, tenants, rows, stop_at[0], time.thread_time
        )

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(cell.clients)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - start
    for s in sessions:
        s.close()
    ops = sum(o[0] for o in out)
    lats = [x for o in out for x in o[1]]
    return (
        ops,
        elapsed,
        lats,
        sum(o[2] for o in out),
        sum(o[3] for o in out),
        sum(o[4] for o in out),
    )


@dataclass(frozen=True)
class ProcRuntime:
    """What a client process needs to build its own variant runtime (picklable)."""

    variant: str
    dsn: str
    opts: dict[str, Any]

    def close(self) -> None:  # nothing shared to close: each process owns its runtime
        pass


def _proc_client(
    rt: ProcRuntime,
    cell: Cell,
    seconds: float,
    tenants: int,
    rows: int,
    seed: int,
    index: int,
    ready: Any,
    out: Any,
) -> None:
    """One client process: its own runtime (pool of one), warm-up, then the timed loop."""
    if cell.client_cpu is not None:  # before the pool starts its threads: they inherit it
        os.sched_setaffinity(0, {cell.client_cpu})
    runtime = VARIANTS[rt.variant].factory(rt.dsn, dict(rt.opts))
    try:
        s = runtime.session()
        rnd = random.Random(seed * 1000 + index)
        for _ in range(10):  # past psycopg's prepare threshold, outside the timed window
            s.run(cell.workload, *_keys(rnd, tenants, rows))
        ready.wait()
        end = time.perf_counter() + seconds
        # this process only: its client code and its pool
        out.put(_timed_loop(s, cell.workload, rnd, tenants, rows, end, time.process_time))
        s.close()
    finally:
        runtime.close()


_MP: Any = None


def _mp_context() -> Any:
    """A forkserver: children fork from a clean, single-threaded server process."""
    global _MP
    if _MP is None:
        import multiprocessing

        _MP = multiprocessing.get_context("forkserver")
        _MP.set_forkserver_preload(["tenantguard.bench.variants", "tenantguard.bench.harness"])
    return _MP


def _run_procs(
    rt: ProcRuntime, cell: Cell, seconds: float, tenants: int, rows: int, seed: int
) -> Run:
    """Clients as separate processes, as a real deployment runs several workers."""
    ctx = _mp_context()
    ready = ctx.Barrier(cell.clients + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_proc_client,
            args=(rt, cell, seconds, tenants, rows, seed, i, ready, out),
            daemon=True,
        )
        for i in range(cell.clients)
    ]
    for p in procs:
        p.start()
    try:
        ready.wait(timeout=120)
        got = [out.get(timeout=seconds + 120) for _ in procs]
        elapsed = seconds  # each client ran its loop for exactly this long after the barrier
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return (
        sum(g[0] for g in got),
        elapsed,
        [x for g in got for x in g[1]],
        sum(g[2] for g in got),
        sum(g[3] for g in got),
        sum(g[4] for g in got),
    )


def _run_async(runtime: Any, cell: Cell, seconds: float, tenants: int, rows: int, seed: int) -> Run:
    async def main() -> Run:
        start = time.perf_counter()
        cpu0 = time.thread_time()  # the event loop's thread runs every task
        end = start + seconds

        async def client(i: int) -> tuple[int, list[float], int, int]:
            rnd = random.Random(seed * 1000 + i)
            lats: list[float] = []
            n = cross = errs = 0
            while True:
                tid, key = _keys(rnd, tenants, rows)
                t0 = time.perf_counter()
                if t0 >= end:
                    break
                try:
                    got = await runtime.run_async(cell.workload, tid, key)
                except Exception:
                    errs += 1
                    continue
                lats.append((time.perf_counter() - t0) * 1000)
                cross += sum(1 for r in got if r[0] != tid)
                n += 1
            return n, lats, cross, errs

        res = await asyncio.gather(*(client(i) for i in range(cell.clients)))
        elapsed = time.perf_counter() - start
        return (
            sum(r[0] for r in res),
            elapsed,
            [x for r in res for x in r[1]],
            sum(r[2] for r in res),
            sum(r[3] for r in res),
            time.thread_time() - cpu0,
        )

    result: Run = runtime._call(main())
    return result


def run_group(
    group: Group,
    runtimes: dict[Cell, Any],
    *,
    rounds: int,
    seconds: float,
    tenants: int,
    rows: int,
    on_cell: Callable[[], None] | None = None,
) -> list[CellResult]:
    """Run every cell of *group* for *rounds* interleaved rounds of *seconds* each."""
    results = {c: CellResult(c) for c in group.cells}
    for r in range(rounds):
        order = group.cells[r % len(group.cells) :] + group.cells[: r % len(group.cells)]
        per_round: dict[Cell, float] = {}
        for cell in order:
            runtime = runtimes[cell]
            if cell.mode == "processes":
                runner: Callable[..., Run] = _run_procs
            elif VARIANTS[cell.variant].kind == "async":
                runner = _run_async
            else:
                runner = _run_sync
            ops, elapsed, lats, cross, errs, cpu = runner(
                runtime, cell, seconds, tenants, rows, seed=r
            )
            res = results[cell]
            res.cpu_s += cpu
            tput = ops / elapsed if elapsed > 0 else 0.0
            res.throughputs.append(tput)
            res.latencies_ms.extend(lats)
            res.ops += ops
            res.cross_tenant_rows += cross
            res.errors += errs
            per_round[cell] = tput
            if on_cell:
                on_cell()
        base = per_round.get(group.baseline, 0.0)
        for cell, tput in per_round.items():
            if base > 0:
                results[cell].ratios.append(tput / base)
    return [results[c] for c in group.cells]


def count_round_trips(
    make_session: Callable[[], Any], workload: str, proxy: Any, tenants: int, rows: int, n: int = 20
) -> float:
    """Round trips per operation, counted by a forwarding proxy (after a warm-up)."""
    session = make_session()
    rnd = random.Random(99)
    try:
        for _ in range(8):  # warm-up: past psycopg's prepare threshold
            session.run(workload, *_keys(rnd, tenants, rows))
        time.sleep(0.05)
        proxy.reset()
        for _ in range(n):
            session.run(workload, *_keys(rnd, tenants, rows))
        time.sleep(0.05)
        return float(proxy.round_trips) / n
    finally:
        session.close()
