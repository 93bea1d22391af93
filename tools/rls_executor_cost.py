"""Server executor time of RLS vs a hand-written WHERE, measured inside the server.

    .venv/bin/python tools/rls_executor_cost.py [--tenants 10000] [--rows 100] [--helper plpgsql]

Runs 20,000 point selects and newest-10 lists in a plpgsql loop (cached plans, as
prepared statements run) as the app role (RLS) and as a BYPASSRLS role with the WHERE
by hand, interleaved in 5 rounds; prints microseconds per query (median). With
``--helper plpgsql`` the tenant helper is replaced by the old plpgsql version, to show
what inlining the SQL helper is worth.
"""

from __future__ import annotations

import argparse
import statistics

import psycopg

from tenantguard.admin import admin_connect
from tenantguard.bench.dataset import build_dataset
from tenantguard.bench.run import _with
from tenantguard.embedded import embedded_postgres

LOOP = """
CREATE OR REPLACE FUNCTION public.tg_loop(q text, n int, t bigint, r int) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; k bigint; rec record;
BEGIN
  PERFORM set_config('app.tenant_id', t::text, true);
  t0 := clock_timestamp();
  FOR i IN 1..n LOOP
    k := (t - 1) * r + 1 + (i % r);
    IF q = 'rls_select' THEN
      SELECT tenant_id, id, amount INTO rec FROM bench.items WHERE id = k;
    ELSIF q = 'where_select' THEN
      SELECT tenant_id, id, amount INTO rec FROM bench.items WHERE tenant_id = t AND id = k;
    ELSIF q = 'rls_list' THEN
      PERFORM count(*) FROM (SELECT id FROM bench.items ORDER BY id DESC LIMIT 10) s;
    ELSE
      PERFORM count(*) FROM (SELECT id FROM bench.items WHERE tenant_id = t
                             ORDER BY id DESC LIMIT 10) s;
    END IF;
  END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
GRANT EXECUTE ON FUNCTION public.tg_loop(text, int, bigint, int) TO PUBLIC;
"""
PLPGSQL_HELPER = """
CREATE OR REPLACE FUNCTION tenantguard.current_tenant() RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE v text := current_setting('app.tenant_id', true);
BEGIN
  IF v IS NULL OR v = '' THEN RAISE EXCEPTION 'no tenant'; END IF;
  RETURN v;
END $$
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=10000)
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--helper", choices=["sql", "plpgsql"], default="sql")
    args = ap.parse_args()
    with embedded_postgres() as dsn0:
        with admin_connect(dsn0, autocommit=True) as a:
            ds = build_dataset(a, args.tenants, args.rows)
            db = psycopg.conninfo.conninfo_to_dict(a.info.dsn).get("dbname")
        admin = _with(dsn0, dbname=str(db))
        with psycopg.connect(admin, autocommit=True) as a:
            a.execute(LOOP)
            if args.helper == "plpgsql":
                a.execute(PLPGSQL_HELPER)
        app = psycopg.connect(_with(dsn0, user=ds.app_role), autocommit=True)
        raw = psycopg.connect(_with(dsn0, user=ds.raw_role), autocommit=True)
        res: dict[str, list[float]] = {}
        for rnd in range(5):
            t = 1 + rnd * 997 % args.tenants
            for q, c in (
                ("rls_select", app),
                ("where_select", raw),
                ("rls_list", app),
                ("where_list", raw),
            ):
                with c.transaction():
                    row = c.execute(
                        "SELECT public.tg_loop(%s, 20000, %s, %s)", (q, t, args.rows)
                    ).fetchone()
                res.setdefault(q, []).append(float(row[0]))  # type: ignore[index]
        m = {k: statistics.median(v) for k, v in res.items()}
        print(
            f"helper={args.helper}, {args.tenants}x{args.rows} rows, us per query (median of 5 x 20000)"
        )
        for w in ("select", "list"):
            rls, where = m[f"rls_{w}"], m[f"where_{w}"]
            print(
                f"  {w:6s} RLS {rls:6.2f}  hand WHERE {where:6.2f}  ratio {rls / where:.2f}  (+{rls - where:.2f} us)"
            )


if __name__ == "__main__":
    main()
