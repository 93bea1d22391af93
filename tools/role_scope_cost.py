"""Server executor time of ``protect --role-scope`` policies vs the plain ones, pool model.

    .venv/bin/python tools/role_scope_cost.py [--tenants 10000] [--rows 100]

Builds the benchmark dataset on an embedded PostgreSQL, then times 20,000 point selects
and newest-10 lists in a plpgsql loop (cached plans, as prepared statements run) as the
app role with the tenant setting bound, with the table protected without and with
``--role-scope`` (switched back and forth, 5 rounds each); prints microseconds per
query (median). This is the pool-model path: the scope view finds no per-tenant login
and no break-glass grant, then reads the setting.
"""

from __future__ import annotations

import argparse
import statistics

import psycopg

from tenantguard.admin import admin_connect, protect
from tenantguard.bench.dataset import build_dataset
from tenantguard.bench.run import _with
from tenantguard.embedded import embedded_postgres

LOOP = """
CREATE OR REPLACE FUNCTION public.tg_scope_loop(q text, n int, t bigint, r int) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; k bigint; rec record;
BEGIN
  PERFORM set_config('app.tenant_id', t::text, true);
  t0 := clock_timestamp();
  FOR i IN 1..n LOOP
    k := (t - 1) * r + 1 + (i % r);
    IF q = 'select' THEN
      SELECT tenant_id, id, amount INTO rec FROM bench.items WHERE id = k;
    ELSE
      PERFORM count(*) FROM (SELECT id FROM bench.items ORDER BY id DESC LIMIT 10) s;
    END IF;
  END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
GRANT EXECUTE ON FUNCTION public.tg_scope_loop(text, int, bigint, int) TO PUBLIC;
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=10000)
    ap.add_argument("--rows", type=int, default=100)
    args = ap.parse_args()
    with embedded_postgres() as dsn0:
        with admin_connect(dsn0, autocommit=True) as a:
            ds = build_dataset(a, args.tenants, args.rows)
            db = psycopg.conninfo.conninfo_to_dict(a.info.dsn).get("dbname")
        admin = psycopg.connect(_with(dsn0, dbname=str(db)), autocommit=True)
        admin.execute(LOOP)
        res: dict[str, list[float]] = {}
        for rnd in range(10):
            scope = rnd % 2 == 1
            protect(admin, ["bench.items"], role_scope=scope)
            label = "role-scope" if scope else "plain"
            t = 1 + rnd * 997 % args.tenants
            # A new connection per round: plans cached under the other policies are gone.
            with psycopg.connect(_with(dsn0, dbname=str(db), user=ds.app_role)) as app:
                for q in ("select", "list"):
                    row = app.execute(
                        "SELECT public.tg_scope_loop(%s, 20000, %s, %s)", (q, t, args.rows)
                    ).fetchone()
                    res.setdefault(f"{label} {q}", []).append(float(row[0]))  # type: ignore[index]
        admin.close()
        m = {k: statistics.median(v) for k, v in res.items()}
        print(f"{args.tenants}x{args.rows} rows, us per query (median of 5 x 20000), app role")
        for q in ("select", "list"):
            plain, scope_ = m[f"plain {q}"], m[f"role-scope {q}"]
            print(
                f"  {q:6s} plain {plain:6.2f}  role-scope {scope_:6.2f}  "
                f"ratio {scope_ / plain:.2f}  (+{scope_ - plain:.2f} us)"
            )


if __name__ == "__main__":
    main()
