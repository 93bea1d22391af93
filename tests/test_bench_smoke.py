"""The benchmark harness runs end to end (tiny, untimed: nothing here asserts speed)."""

from __future__ import annotations

import json
import secrets

import psycopg
from psycopg import sql

from tenantguard.bench.pgbench import find_pgbench
from tenantguard.bench.report import load_results, plot, write_markdown
from tenantguard.bench.run import BenchConfig, evaluate_targets, run_bench, save
from tenantguard.testing.pgbouncer import find_pgbouncer, pgbouncer_version


def test_harness_runs_and_writes_report(server_dsn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    suffix = secrets.token_hex(3)
    cfg = BenchConfig(
        dsn=server_dsn,
        tenants=20,
        rows_per_tenant=5,
        clients=[1, 2],
        seconds=0.05,
        rounds=1,
        output=tmp_path,
        command="pytest smoke",
        database=f"tg_benchsmoke_{suffix}",
        role_prefix=f"tg_bs_{suffix}",
    )
    try:
        results = run_bench(cfg)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as c:
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(f"{cfg.database}_signed")
                )
            )
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(cfg.database)
                )
            )
            for r in ("app", "owner", "raw", "keys"):
                c.execute(
                    sql.SQL("DROP ROLE IF EXISTS {}").format(
                        sql.Identifier(f"{cfg.role_prefix}_{r}")
                    )
                )
    path = save(results, tmp_path).rename(tmp_path / "results-20x5.json")
    assert json.loads(path.read_text())["meta"]["dataset"]["rows"] == 100
    groups = results["groups"]
    assert (
        "workloads/select/1" in groups and "index/list/1" in groups and "guard/select/1" in groups
    )
    # The pool model's target group: tenantguard vs psycopg_pool + WHERE, one client.
    assert {c["label"] for c in groups["pool/select/1"]["cells"]} == {"pool_where", "tenantguard"}
    assert groups["pool/select/1"]["baseline"] == "pool_where"
    # Signed vs unsigned contexts, in the second database.
    assert [c["label"] for c in groups["signed/select/1"]["cells"]] == [
        "tenantguard [items_plain] via signed",
        "tenantguard_signed via signed",
    ]
    assert "pgbouncer/select/1" in groups  # pgbouncer is installed wherever the suite runs
    bouncer = results["meta"]["pgbouncer"]  # find_pgbouncer()'s: TENANTGUARD_PGBOUNCER in CI
    version = pgbouncer_version(str(find_pgbouncer()))
    keeps = version >= (1, 21)
    assert bouncer["version"] == ".".join(map(str, version)) and bouncer["keeps_prepared"] is keeps
    labels = {c["label"] for c in groups["pgbouncer/select/1"]["cells"]}
    # Direct without prepared statements only where PgBouncer cannot keep them.
    assert labels == {
        "tenantguard",
        "tenantguard via pgbouncer (tcp)",
        "tenantguard via pgbouncer (unix)",
        *(() if keeps else ("tenantguard (unprepared)",)),
    }
    assert {c["label"] for c in groups["procs/select/2"]["cells"]} == {
        "raw",
        "pool_where",
        "naive",
        "tenantguard",
    }
    every = [c for g in groups.values() for c in g["cells"]]
    assert all(c["ops"] > 0 for c in every), [c["label"] for c in every if not c["ops"]]
    assert all(c["errors"] == 0 for c in every), [
        (c["label"], c["errors"]) for c in every if c["errors"]
    ]
    assert sum(c["cross_tenant_rows"] for c in every) == 0
    assert results["round_trips"]["tenantguard"]["select"] == 1.0
    assert results["round_trips"]["naive"]["select"] == 4.0
    assert "Index" in results["explain"]["items"]
    if "split/select/1" in groups:  # the server is local: app and database on separate CPUs
        assert {c["label"] for c in groups["split/select/1"]["cells"]} == {
            "raw",
            "pool_where",
            "naive",
            "tenantguard",
        }
    names = {t["target"] for t in evaluate_targets(results)}
    assert names >= {
        "round trips per point select",
        "point select vs raw, 2 client process(es)",
        f"point select vs psycopg_pool + WHERE, 1 client, median of {3 * cfg.rounds} rounds",
        f"signed point select vs unsigned, 1 client, median of {3 * cfg.rounds} rounds",
        "PgBouncer vs direct, same transport, 1 client(s)",
    }
    if find_pgbench() is not None:  # Debian's postgresql-client: wherever the suite runs
        per = results["pgbench"]["clients"]
        assert set(per) == {"1", "2"} and set(per["1"]) == {"raw", "tenantguard", "naive"}
        assert all(v["tps_median"] > 0 for c in per.values() for v in c.values())
        assert per["1"]["raw"]["ratio_median"] == 1.0
    pngs = plot(results, tmp_path)
    assert all(p.exists() and p.stat().st_size > 1000 for p in pngs)
    md = tmp_path / "BENCHMARKS.md"
    write_markdown(load_results(tmp_path), tmp_path, md, rel=".")
    text = md.read_text()
    assert "## Dataset 20x5" in text and "pytest smoke" in text and "| tenantguard |" in text
    assert f"- PgBouncer: {bouncer['version']}, prepared statements " in text
    if find_pgbench() is not None:
        assert "### The server's share" in text and "| 2 | tenantguard |" in text
