"""BENCHMARKS.md and PNG plots, generated from the harness's JSON (never by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["load_results", "plot", "write_markdown"]


def load_results(out_dir: Path) -> list[dict[str, Any]]:
    files = sorted(out_dir.glob("results-*.json"), key=lambda p: _rows_of(p))
    return [json.loads(p.read_text()) for p in files]


def _rows_of(p: Path) -> int:
    try:
        t, r = p.stem.removeprefix("results-").split("x")
        return int(t) * int(r)
    except ValueError:
        return 0


def _tag(res: dict[str, Any]) -> str:
    d = res["meta"]["dataset"]
    return f"{d['tenants']}x{d['rows_per_tenant']}"


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def plot(res: dict[str, Any], out_dir: Path) -> list[Path]:
    """Throughput by clients per variant, latency distribution, seq vs index scan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tag = _tag(res)
    paths: list[Path] = []
    clients = res["meta"]["clients"]
    variants = ["raw", "pool_where", "naive", "session_set", "tenantguard", "tenantguard_async"]

    fig, axes = plt.subplots(1, 4, figsize=(16, 4), sharey=False)
    for ax, w in zip(axes, ("select", "list", "insert", "update"), strict=True):
        for v in variants:
            ys = []
            for c in clients:
                cell = next(
                    (
                        x
                        for x in res["groups"].get(f"workloads/{w}/{c}", {}).get("cells", [])
                        if x["label"] == v
                    ),
                    None,
                )
                ys.append(cell["throughput_median"] if cell else 0)
            ax.plot(clients, ys, marker="o", label=v)
        ax.set_title(f"{w}")
        ax.set_xlabel("clients")
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ops/s (median of rounds)")
    axes[-1].legend(fontsize=8)
    fig.suptitle(f"Throughput by clients ({tag})")
    fig.tight_layout()
    p = out_dir / f"throughput-{tag}.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(8, 4))
    data, labels = [], []
    for v in variants:
        cell = next(
            (
                x
                for x in res["groups"].get("workloads/select/1", {}).get("cells", [])
                if x["label"] == v
            ),
            None,
        )
        if cell:
            data.append([cell["p50_ms"], cell["p99_ms"]])
            labels.append(v)
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], [d[0] for d in data], width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [d[1] for d in data], width=0.4, label="p99")
    ax.set_xticks(list(xs), labels, rotation=15)
    ax.set_ylabel("ms")
    ax.set_title(f"Point select latency, 1 client ({tag})")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    p = out_dir / f"latency-{tag}.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    paths.append(p)

    g = res["groups"].get("index/list/1")
    if g:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [c["label"] for c in g["cells"]]
        ax.bar(labels, [c["p50_ms"] or 0 for c in g["cells"]])
        ax.set_yscale("log")
        ax.set_ylabel("p50 latency, ms (log)")
        ax.set_title(f"Newest-10 list: index scan vs seq scan ({tag})")
        ax.tick_params(axis="x", labelrotation=10)
        fig.tight_layout()
        p = out_dir / f"index-{tag}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths


_VARIANT_DOCS = {
    "raw": "psycopg, autocommit, `WHERE tenant_id = %s` written by hand, one dedicated connection and one reused cursor per client; a BYPASSRLS role on the same table, so RLS costs nothing here (the baseline a user keeps).",
    "pool_where": "psycopg_pool `ConnectionPool` + the hand-written `WHERE`, RLS bypassed: what a user with a pool keeps (isolates the pool's own cost: checkout/checkin and a new cursor per request).",
    "tg_where_bypass": "the `TenantPool` client path on a BYPASSRLS role with the hand-written `WHERE`: differs from `tenantguard` only by RLS (the RLS-vs-WHERE target).",
    "naive": "the transaction-local setting written plainly: `BEGIN`, `set_config(.., true)`, the query, `COMMIT`, each its own round trip (four per request).",
    "session_set": "`set_config(.., false)` on the session, then the query: what many libraries do; unsafe with pools (reference only).",
    "tenantguard": "`TenantPool`: the binding queued in a pipeline with the query under one Sync; checkin guard on.",
    "tenantguard_noguard": "`TenantPool` with the checkin guard switched off, to measure the guard's cost.",
    "tenantguard_async": "`AsyncTenantPool`, one asyncio task per client.",
}

_MODE_DOCS = [
    "**Client threads vs client processes.** The `workloads/*` groups run every client as a",
    "thread of one Python process (the GIL serialises their client CPU); the `procs/select`",
    "group runs each client in its own OS process with its own connection or pool of one, as",
    "a deployment with several worker processes does (children forked from a clean",
    "forkserver; client CPU summed over them). The `split/select` group runs the same",
    "processes pinned to CPU 0 and the embedded server with all its backends on CPU 1 (only",
    "a server tenantguard started itself is pinned; with `--dsn` these groups are skipped):",
    "app and database no longer compete for the same cores, as on separate machines, and",
    "the scheduler's placement of each backend (same CPU as its client or not: on this VM a",
    "cross-CPU wake-up costs more than the request) is the same for every variant. All three",
    "are reported and checked against the targets.",
    "",
    "**PgBouncer cells.** `via pgbouncer (unix)` and `via pgbouncer (tcp)` reach the same",
    "PgBouncer (transaction mode) on its Unix socket or on TCP loopback. PgBouncer 1.21+",
    "with `max_prepared_statements` keeps protocol-level prepared statements, so its",
    "clients keep psycopg's default `prepare_threshold` (and tenantguard's prepared",
    "binding); an older one (Debian bookworm's 1.18) cannot, so its clients run with",
    "`prepare_threshold=None`, and `tenantguard (unprepared)`, direct with the same",
    "setting, separates the cost of losing prepared statements from the cost of the extra",
    "hop. Each dataset below says which PgBouncer ran. The target compares PgBouncer on",
    "the same transport as direct (`same transport` in the targets).",
]


def _bouncer(res: dict[str, Any]) -> dict[str, Any] | None:
    """The PgBouncer a run measured (``version`` None when not recorded), or None."""
    if not any(name.startswith("pgbouncer/") for name in res["groups"]):
        return None
    # Runs from before the version was recorded all used prepare_threshold=None through it.
    return res["meta"].get("pgbouncer") or {"version": None, "keeps_prepared": False}


def _bouncer_text(res: dict[str, Any]) -> str:
    """Which PgBouncer ran and whether its clients kept prepared statements."""
    b = _bouncer(res)
    if b is None:
        return "not run"
    name = str(b["version"]) if b.get("version") else "version not recorded"
    if b["keeps_prepared"]:
        return (
            f"{name}, prepared statements kept (`max_prepared_statements ="
            f" {b.get('max_prepared_statements')}`; clients with psycopg's default"
            " `prepare_threshold`)"
        )
    return f"{name}, prepared statements not kept (clients with `prepare_threshold=None`)"


def _cpu(res: dict[str, Any], variant: str, clients: int = 1, group: str = "workloads") -> str:
    return _fmt(_cellv(res, f"{group}/select/{clients}", variant, "cpu_us_per_op"), 1)


def _cellv(res: dict[str, Any], group: str, label: str, key: str) -> Any:
    for c in res["groups"].get(group, {}).get("cells", []):
        if c["label"] == label:
            return c.get(key)
    return None


def _ratio(res: dict[str, Any], group: str, label: str) -> str:
    return _fmt(_cellv(res, group, label, "ratio_median"), 2)


def _per_dataset(results: list[dict[str, Any]], fn: Any) -> str:
    return "; ".join(f"{_tag(r)}: {fn(r)}" for r in results)


def _analysis(results: list[dict[str, Any]], out_dir: Path) -> list[str]:
    """Why the missed targets are missed, with this run's own figures."""
    lines = ["## Where the time goes", ""]
    names = ("raw", "pool_where", "naive", "tenantguard")
    lines += [
        "Client CPU per point select, us/op (from the results above; threads: `workloads`,",
        "processes: `procs`):",
        "",
        "| dataset | clients | mode | raw | pool_where | naive | tenantguard | tenantguard_async |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for c in res["meta"]["clients"]:
            cols = [_cpu(res, v, c) for v in (*names, "tenantguard_async")]
            lines.append(f"| {_tag(res)} | {c} | threads | " + " | ".join(cols) + " |")
            for group, mode in (("procs", "processes"), ("split", "processes, split CPUs")):
                if f"{group}/select/{c}" in res["groups"]:
                    cols = [_cpu(res, v, c, group) for v in names]
                    lines.append(f"| {_tag(res)} | {c} | {mode} | " + " | ".join(cols) + " | - |")
    clients = results[0]["meta"]["clients"] if results else [1]
    hi = clients[-1]

    def sel(r: dict[str, Any], c: int, v: str, group: str = "workloads") -> str:
        return _ratio(r, f"{group}/select/{c}", v)

    lines += [
        "",
        f"- **Point select vs raw (target >= 0.85x, {_status(results, 'point select vs raw')}).**"
        " The baseline is one dedicated",
        "  connection per client with one reused cursor: no pool, no new cursor per request,",
        "  one statement. Every pooled request pays psycopg_pool's checkout/checkin, and with",
        "  plain psycopg a new cursor (`conn.execute()`: a cursor, an adapters map and a",
        "  transformer with cold dumper/loader caches; TenantPool reuses the connection's",
        "  cursor when nothing else holds it): `pool_where`, the same hand-written query",
        "  through a plain psycopg_pool, reaches "
        + _per_dataset(results, lambda r: f"{sel(r, 1, 'pool_where')}x")
        + " at 1 client"
        + (
            ", i.e. a pooled hand-written `WHERE` misses this target by itself."
            if all(
                _lt(_cellv(r, "workloads/select/1", "pool_where", "ratio_median"), 0.85)
                for r in results
            )
            else "."
        ),
        "  tenantguard then adds",
        "  the binding statement in the same round trip, the lease and the guard; relative to",
        "  `pool_where` it runs at "
        + _per_dataset(
            results,
            lambda r: (
                f"{_fmt(_div(_cellv(r, 'workloads/select/1', 'tenantguard', 'ratio_median'), _cellv(r, 'workloads/select/1', 'pool_where', 'ratio_median')), 2)}x"
            ),
        )
        + " (1 client).",
        *_profile_sentences(out_dir),
        "  On the server the binding is a second statement (Bind/Execute of the prepared",
        "  `set_config`) and the policy adds an InitPlan: more server CPU per request than the",
        "  raw query. Unpinned, a request's cost on this VM depends mostly on whether the",
        "  scheduler put the backend on its client's CPU (a cross-CPU wake-up costs more than",
        "  the request itself), so the unpinned groups swing from run to run; the",
        "  `split/select` group and the pinned profile measure every variant alike.",
        "  From 4 clients on the machine's 2 cores are saturated: with threads, the GIL",
        "  serialises client CPU; with processes, client and server processes share the same",
        "  two cores, so throughput follows total CPU per request (client + server); in the",
        "  split group all client processes share CPU 0, so it follows client CPU per request.",
        f"  At {hi} clients tenantguard reaches "
        + _per_dataset(
            results,
            lambda r: (
                f"{sel(r, hi, 'tenantguard')}x (threads), {sel(r, hi, 'tenantguard', 'procs')}x"
                f" (processes), {sel(r, hi, 'tenantguard', 'split')}x (processes, app and"
                " database on separate CPUs)"
            ),
        )
        + "; with app and database on separate CPUs at 1 client: "
        + _per_dataset(results, lambda r: f"{sel(r, 1, 'tenantguard', 'split')}x")
        + " (`pool_where`: "
        + _per_dataset(results, lambda r: f"{sel(r, 1, 'pool_where', 'split')}x")
        + ").",
        *_pgbench_lines(results),
        f"- **Point select vs naive (target >= 2x, {_status(results, 'point select vs naive')}).**"
        " Where requests are latency-bound (1 client)",
        "  the 1 round trip against 4 gives more than 2x. Once the cores are saturated, the naive",
        "  variant's extra round trips overlap with other clients' work, and the ratio falls",
        "  towards the ratio of CPU per request (naive/tenantguard in the table above) instead.",
        f"- **PgBouncer vs direct (target >= 0.9x, {_status(results, 'PgBouncer vs direct')}).**"
        " Same transport (PgBouncer on a Unix socket",
        "  like the embedded server, or TCP when the server is TCP): "
        + _per_dataset(
            results,
            lambda r: ", ".join(
                f"{c} client(s) {_pgb(r, c, True)}x" for c in r["meta"]["clients"][:2]
            ),
        )
        + "; PgBouncer over TCP: "
        + _per_dataset(
            results,
            lambda r: ", ".join(
                f"{c} client(s) {_pgb(r, c, False)}x" for c in r["meta"]["clients"][:2]
            ),
        )
        + "; same transport with clients on CPU 0 and server and PgBouncer on CPU 1: "
        + _per_dataset(
            results,
            lambda r: ", ".join(
                f"{c} client(s) {_pgb(r, c, True, 'split-pgbouncer')}x"
                for c in r["meta"]["clients"][:2]
            ),
        )
        + ".",
        *_pgbouncer_analysis(results),
        f"- **RLS vs hand WHERE ({_status(results, 'RLS with index')}).** Measured end to end"
        " on identical client paths (`tenantguard`",
        "  vs `tg_where_bypass`, which differ only by RLS), time per request RLS / hand WHERE:",
        "  "
        + _per_dataset(
            results,
            lambda r: ", ".join(
                f"{w} {_inv(_cellv(r, f'rls/{w}/1', 'tenantguard', 'ratio_median'))}"
                f" (pinned {_inv(_cellv(r, f'split-rls/{w}/1', 'tenantguard', 'ratio_median'))})"
                for w in ("select", "list")
            ),
        )
        + ".",
        "  Each is a 1-client, latency-bound comparison of two cells of a few rounds; unpinned,",
        "  the backend's CPU placement alone moves such a ratio by 10-20% on this VM, so values",
        "  below 1 are noise, not RLS being faster, and the pinned cells (client on CPU 0, server",
        "  on CPU 1) are the steadier reading. The executor-only ratio",
        "  (info rows, one-shot EXPLAIN ANALYZE) is larger because the policy adds a fixed few",
        "  microseconds (InitPlan + the inlined helper) to an executor time of a few",
        "  microseconds; in steady state it is about 3 us per query (below).",
        f"- **Checkin guard ({_status(results, 'checkin guard cost')}).** Its clean path does no"
        " I/O; measured directly (microbenchmark",
        "  of `_checkin` vs the bare lease bookkeeping) against the request time of the same run.",
        "  The on/off throughput ratios are listed as info: at this scale they are noise.",
        "",
    ]
    for name, title in (
        (
            "profile_hotpath.txt",
            "Client cost by code path, the bench's own point select: `python tools/profile_hotpath.py"
            " -n 400 --rounds 40 --pin 0` (CPU per op, paths interleaved in 40 rounds, median;"
            " client and backends on one CPU so every path is measured alike) and `--callgrind"
            " -n 5000` (instructions per op, deterministic); then the same two runs with the"
            " library before this change (`git archive 71d17d9 src` on `PYTHONPATH`), for"
            " before/after:",
        ),
        (
            "rls_executor_cost.txt",
            "Executor time in steady state, RLS vs hand WHERE (`python tools/rls_executor_cost.py`"
            " and `--helper plpgsql`):",
        ),
        (
            "pool_model_defences.txt",
            "What the pool model's defences cost at one client (`python"
            " tools/bench_pool_model.py --rounds 15 --duration 1`, embedded PostgreSQL 18 and"
            " `--dsn` PostgreSQL 15): TenantPool as shipped (the binding pins role and"
            " search_path, lease ownership checks) against `pin_session=False` and a pooled"
            " hand-written `WHERE`, interleaved rounds, median ratio; and the server's CPU per"
            " request read from each variant's backend (`/proc/<pid>/stat`), steadier than"
            " throughput on a busy machine but not immune to it:",
        ),
    ):
        f = out_dir / name
        if f.exists():
            lines += [title, "", "```", f.read_text().rstrip(), "```", ""]
    return lines


def _profile_figures(
    out_dir: Path,
) -> tuple[dict[str, tuple[float, float]], list[dict[str, float]]]:
    """From profile_hotpath.txt: pinned (client us, server us) and callgrind k instructions."""
    import re

    f = out_dir / "profile_hotpath.txt"
    cpu: dict[str, tuple[float, float]] = {}
    instr: list[dict[str, float]] = []
    if not f.exists():
        return cpu, instr
    for line in f.read_text().splitlines():
        if line.startswith("instructions per point select"):
            instr.append({})
        m = re.search(r"\(bench: (\w+)\)\s+([\d.]+) us\s+server\s+([\d.]+) us", line)
        if m and not instr and m.group(1) not in cpu:
            cpu[m.group(1)] = (float(m.group(2)), float(m.group(3)))
        m = re.search(r"\(bench: (\w+)\)\s+([\d.]+) k$", line)
        if m and instr:
            instr[-1][m.group(1)] = float(m.group(2))
    return cpu, instr


def _profile_sentences(out_dir: Path) -> list[str]:
    cpu, instr = _profile_figures(out_dir)
    names = ("raw", "pool_where", "tenantguard")
    out: list[str] = []
    if all(n in cpu for n in names):
        (rc, rs), (pc, ps), (tc, ts) = (cpu[n] for n in names)
        out += [
            f"  Pinned to one CPU (profile below) a request costs, client + server CPU: raw {rc:g}",
            f"  + {rs:g} us, `pool_where` {pc:g} + {ps:g} us, tenantguard {tc:g} + {ts:g} us; the",
            f"  library's own part is the last difference, {tc - pc:.1f} + {ts - ps:.1f} us.",
        ]
    if instr and all(n in instr[0] for n in names):
        now = instr[0]
        line = (
            f"  In instructions (callgrind, deterministic): raw {now['raw']:g}k, `pool_where`"
            f" {now['pool_where']:g}k, tenantguard {now['tenantguard']:g}k"
        )
        if len(instr) > 1 and "tenantguard" in instr[1]:
            before = instr[1]
            line += (
                f", down from {before['tenantguard']:g}k before this change (tenantguard's own"
                f" part over `pool_where`: {now['tenantguard'] - now['pool_where']:.0f}k,"
                f" was {before['tenantguard'] - before['pool_where']:.0f}k)"
            )
        out.append(line + ".")
    return out


def _pgbench_lines(results: list[dict[str, Any]]) -> list[str]:
    """What isolation costs the server alone: the same statements from a C client."""
    ran = [r for r in results if r.get("pgbench") and "error" not in r["pgbench"]]
    failed = [r for r in results if "error" in (r.get("pgbench") or {})]
    if failed:
        note = [
            f"- **pgbench failed** ({_per_dataset(failed, lambda r: r['pgbench']['error'])});"
            " the rest of those runs stands."
        ]
    else:
        note = []
    if not ran:
        return note or [
            "- **The database's share** was not measured in these results (pgbench, from",
            "  Debian's postgresql-15, was not found).",
        ]

    def cells(r: dict[str, Any]) -> str:
        per = r["pgbench"]["clients"]
        return ", ".join(
            f"{c} client(s) {_fmt(per[c]['tenantguard']['ratio_median'], 2)}x"
            f" (naive {_fmt(per[c]['naive']['ratio_median'], 2)}x)"
            for c in per
        )

    top = [
        r["pgbench"]["clients"][max(r["pgbench"]["clients"], key=int)]["tenantguard"][
            "ratio_median"
        ]
        for r in ran
    ]
    ceiling = (
        [
            "  At the highest client count the server's share alone is below 0.85x: the",
            "  transaction-scoped binding is a second statement (Bind/Execute of the prepared",
            "  `set_config`) in every request's implicit transaction, and the policy adds an",
            "  InitPlan. A client's own CPU per request adds to both sides: it brings the ratio",
            "  closer to 1 only as far as it costs raw as much as it costs tenantguard.",
        ]
        if all(t < 0.85 for t in top)
        else []
    )
    # The Python tenantguard variant against this, at the same client counts, every mode.
    pairs = [
        (py, v["tenantguard"]["ratio_median"])
        for r in ran
        for c, v in r["pgbench"]["clients"].items()
        for group in ("workloads", "procs", "split")
        if (py := _cellv(r, f"{group}/select/{c}", "tenantguard", "ratio_median")) is not None
    ]
    lower = sum(py < server for py, server in pairs)
    if pairs and lower == len(pairs):
        python = [
            f"  The Python `tenantguard` variant is below this in all {len(pairs)} measurements",
            "  (threads, processes, split CPUs): the rest of its gap is the Python client's CPU",
            "  per request (psycopg, psycopg_pool and tenantguard), which on two shared cores",
            "  decides throughput.",
        ]
    elif pairs:
        python = [
            f"  The Python `tenantguard` variant is below this in {lower} of {len(pairs)}"
            " measurements",
            "  (threads, processes, split CPUs); where it is above, its own CPU per request,",
            "  added to both sides, dilutes the server's share.",
        ]
    else:
        python = []
    return [
        "- **The database's share (pgbench, a C client).** pgbench sending what TenantPool",
        "  sends (the binding and the select in one pipeline, as the RLS-bound role) against",
        "  the raw select with its hand-written `WHERE`, interleaved rounds, throughput ratio:",
        "  " + _per_dataset(ran, cells) + ".",
        *python,
        *ceiling,
        *note,
    ]


def _pgbouncer_analysis(results: list[dict[str, Any]]) -> list[str]:
    """The PgBouncer bullet's second half: what kept or lost prepared statements cost."""
    ran = [(r, b) for r in results if (b := _bouncer(r)) is not None]
    lines = ["  PgBouncer: " + _per_dataset(results, _bouncer_text) + "."]
    if not ran:
        return lines
    unprepared = [r for r, b in ran if not b["keeps_prepared"]]
    kept = sorted(
        {str(b["version"] or "(version not recorded)") for _, b in ran if b["keeps_prepared"]}
    )
    noprep = "tenantguard (unprepared)"
    if unprepared:
        below = all(
            _lt(_cellv(r, f"pgbouncer/select/{c}", noprep, "ratio_median"), 0.9)
            for r in unprepared
            for c in r["meta"]["clients"][:2]
        )
        lines += [
            "  Direct without prepared statements (what a PgBouncer that cannot keep them",
            "  imposes): "
            + _per_dataset(
                unprepared,
                lambda r: ", ".join(
                    f"{c} client(s) {_ratio(r, f'pgbouncer/select/{c}', noprep)}x"
                    for c in r["meta"]["clients"][:2]
                ),
            )
            + ".",
            "  Losing prepared statements alone "
            + ("already falls below the target" if below else "is part of the gap")
            + ": the server then parses and plans",
            "  both the binding and the statement on every request.",
        ]
    if kept:
        lines += [
            "  Through PgBouncer "
            + ", ".join(kept)
            + " the clients keep prepared statements (the binding and the query, tracked by",
            "  PgBouncer's `max_prepared_statements`), so the gap to direct is the hop's.",
        ]
    else:
        lines += [
            "  PgBouncer >= 1.21 with `max_prepared_statements` keeps prepared statements;",
            "  these results do not measure one (`make pgbouncer` builds 1.24.1 for `make bench`).",
        ]
    cross = sum(
        c["cross_tenant_rows"]
        for r in results
        for name, g in r["groups"].items()
        if "pgbouncer/" in name
        for c in g["cells"]
    )

    def transports(r: dict[str, Any]) -> str:
        return ", ".join(
            f"{c} client(s) unix {_ratio(r, f'pgbouncer/select/{c}', UNIX)}x,"
            f" tcp {_ratio(r, f'pgbouncer/select/{c}', TCP)}x"
            for c in r["meta"]["clients"][:2]
        )

    lines += [
        "  The hop: client -> PgBouncer -> server is two more process wake-ups per round trip,",
        "  and PgBouncer's own CPU competes for the same two cores. By transport, PgBouncer vs",
        "  direct: " + _per_dataset([r for r, _ in ran], transports) + ".",
        "  Correctness holds either way: zero cross-tenant rows through PgBouncer in every run."
        if cross == 0
        else f"  **{cross} cross-tenant rows through PgBouncer.**",
    ]
    return lines


UNIX, TCP = "tenantguard via pgbouncer (unix)", "tenantguard via pgbouncer (tcp)"


def _lt(a: float | None, b: float) -> bool:
    return a is not None and a < b


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _inv(ratio: float | None) -> str:
    return _fmt(1 / ratio, 2) if ratio else "-"


def _status(results: list[dict[str, Any]], prefix: str) -> str:
    """'met', 'missed' or 'met in k of n', over every dataset's targets starting with *prefix*."""
    from tenantguard.bench.run import evaluate_targets

    got = [t["met"] for r in results for t in evaluate_targets(r) if t["target"].startswith(prefix)]
    if not got:
        return "not measured"
    if all(got):
        return "met"
    if not any(got):
        return "missed"
    return f"met in {sum(got)} of {len(got)} measurements"


def _pgb(res: dict[str, Any], clients: int, same: bool, prefix: str = "pgbouncer") -> str:
    for c in res["groups"].get(f"{prefix}/select/{clients}", {}).get("cells", []):
        if "via pgbouncer" in c["label"] and bool(c.get("same_transport")) == same:
            return _fmt(c.get("ratio_median"), 2)
    return "-"


def write_markdown(results: list[dict[str, Any]], out_dir: Path, path: Path, rel: str) -> None:
    """Write BENCHMARKS.md from every results file (one section per dataset)."""
    lines: list[str] = [
        "# Benchmarks",
        "",
        "Generated by `tenantguard bench` from the JSON next to it "
        f"(`{rel}/results-*.json`); do not edit by hand.",
        "",
        "Variants run interleaved in rounds (A B C A B C ...); each figure is the median of",
        "per-round ratios to the baseline measured in the same round, so machine noise hits",
        "every variant alike. Absolute numbers are for this machine only.",
        "",
        "## Variants",
        "",
    ]
    for v, doc in _VARIANT_DOCS.items():
        lines.append(f"- **{v}**: {doc}")
    lines += ["", *_MODE_DOCS, ""]
    for res in results:
        meta = res["meta"]
        tag = _tag(res)
        lines += [
            f"## Dataset {tag} ({meta['dataset']['rows']:,} rows)",
            "",
            f"- command: `{meta['command']}`",
            f"- server: PostgreSQL {meta['server_version']}; machine: {meta['machine']}",
            f"- PgBouncer: {_bouncer_text(res)}",
            f"- {meta['rounds']} rounds x {meta['seconds_per_cell']} s per cell"
            + (
                f" ({3 * meta['rounds']} for the guard, RLS and pool groups)"
                if meta.get("small_effect_rounds")
                else ""
            )
            + f"; run took {meta.get('duration_s')} s",
            "",
            "### Targets",
            "",
            "| target | value | goal | met |",
            "|---|---|---|---|",
        ]
        from tenantguard.bench.run import evaluate_targets

        for t in evaluate_targets(res):  # recomputed: the report follows the current targets
            met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
            lines.append(f"| {t['target']} | {_fmt(t['value'], 3)} | {t['goal']} | {met} |")
        lines += [
            "",
            "### Round trips per operation (counted by a forwarding proxy)",
            "",
            "| variant | " + " | ".join(("select", "list", "insert", "update")) + " |",
            "|---|---|---|---|---|",
        ]
        for v, per in res.get("round_trips", {}).items():
            lines.append(
                f"| {v} | "
                + " | ".join(_fmt(per.get(w), 2) for w in ("select", "list", "insert", "update"))
                + " |"
            )
        lines += ["", "### Results", ""]
        lines += [
            "| group | variant | clients | ops/s (median) | ratio to baseline (median) | p50 ms | p99 ms | client CPU us/op | cross-tenant rows |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, g in res["groups"].items():
            for c in g["cells"]:
                lines.append(
                    f"| {name.rsplit('/', 1)[0]} | {c['label']} | {c['clients']} | {_fmt(c['throughput_median'], 0)} | "
                    f"{_fmt(c['ratio_median'], 3)} | {_fmt(c['p50_ms'], 3)} | {_fmt(c['p99_ms'], 3)} | "
                    f"{_fmt(c.get('cpu_us_per_op'), 1)} | {c['cross_tenant_rows']} |"
                )
        cost = res.get("server_rls_cost", {})
        if cost:
            lines += [
                "",
                "### RLS vs hand-written WHERE, server execution time (EXPLAIN ANALYZE, median)",
                "",
                "| query | RLS (ms) | hand WHERE (ms) | ratio |",
                "|---|---|---|---|",
            ]
            for w, v in cost.items():
                lines.append(
                    f"| {w} | {_fmt(v['rls_ms'], 4)} | {_fmt(v['where_ms'], 4)} | {_fmt(v['ratio'], 3)} |"
                )
        pgb = res.get("pgbench")
        if pgb and "error" in pgb:
            lines += ["", f"pgbench (the server's share) failed: {pgb['error']}"]
        elif pgb:
            lines += [
                "",
                "### The server's share: the same statements from pgbench (a C client)",
                "",
                f"`pgbench -M prepared`, {pgb['rounds']} interleaved rounds x"
                f" {pgb['seconds_per_cell']} s per script; ratio to `raw` (median of per-round"
                " ratios). Scripts: `tenantguard` = the binding and the select in one pipeline",
                "(TenantPool's messages), as the app role under RLS; `naive` = BEGIN, binding,",
                "select, COMMIT; `raw` = the select with the hand-written WHERE, RLS bypassed.",
                "pgbench checks no rows: a cost measurement only.",
                "",
                "| clients | script | tx/s (median) | ratio to raw | avg latency ms |",
                "|---|---|---|---|---|",
            ]
            for c, per in pgb["clients"].items():
                for name, v in per.items():
                    lines.append(
                        f"| {c} | {name} | {_fmt(v['tps_median'], 0)} | {_fmt(v['ratio_median'], 3)}"
                        f" | {_fmt(v['latency_avg_ms_median'], 3)} |"
                    )
        ex = res.get("explain", {})
        if ex:
            lines += ["", "### Plans (newest-10 list as the app role)", ""]
            for table, plan in ex.items():
                lines += [f"`bench.{table}`:", "", "```", plan, "```", ""]
        lines += ["### Plots", ""]
        for kind in ("throughput", "latency", "index"):
            p = out_dir / f"{kind}-{tag}.png"
            if p.exists():
                lines.append(f"![{kind} {tag}]({rel}/{p.name})")
                lines.append("")
    lines += _analysis(results, out_dir)
    lines += [
        "## Reproduce",
        "",
        "```console",
        "make bench                       # embedded PostgreSQL, both datasets, PgBouncer 1.24.1",
        "make pgbouncer                   # just build it: .cache/pgbouncer-1.24.1/bin/pgbouncer",
        "tenantguard bench --tenants 10000 --rows-per-tenant 100 --clients 1,4,16 \\",
        "    --pgbouncer .cache/pgbouncer-1.24.1/bin/pgbouncer",
        "tenantguard bench --dsn postgresql://postgres@127.0.0.1:5432/postgres --tenants 100000",
        "```",
        "",
    ]
    path.write_text("\n".join(lines))
