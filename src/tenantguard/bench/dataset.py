"""Benchmark dataset: N tenants x M rows, generated server-side, in two table shapes.

``bench.items``       RLS-protected by tenantguard, with the composite (tenant_id, id) index.
``bench.items_noidx`` the same rows and policies, without the composite index.

:func:`add_signed_shapes` turns a dataset's database into the signed-context one:
``bench.items`` with ``install --signed`` policies (the verifying view) and
``bench.items_plain``, the same rows, index and policy shape calling a copy of the unsigned
helper, so both run against one server, data and cache.

Ids are tenant-major (``id = (tenant - 1) * rows + r``), so a tenant's rows are
contiguous and the newest-N list is an index range scan when the index exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.admin import install, protect
from tenantguard.admin.keys import create_key, list_keys, rotate_key
from tenantguard.core.names import QualifiedName
from tenantguard.core.signing import SigningKey
from tenantguard.core.sqlbuild import (
    InstallSpec,
    ProtectSpec,
    _helper_sql,
    grant_statements,
    protect_statements,
    render,
)

__all__ = ["Dataset", "add_signed_shapes", "build_dataset", "explain_list"]

TABLES = ("items", "items_noidx")


@dataclass(frozen=True)
class Dataset:
    tenants: int
    rows_per_tenant: int
    app_role: str
    raw_role: str  # BYPASSRLS: the hand-written WHERE baseline on the same table

    @property
    def rows(self) -> int:
        return self.tenants * self.rows_per_tenant


def _exists(conn: psycopg.Connection[Any], tenants: int, rows: int) -> bool:
    """A dataset of this exact size is already there (reuse it across runs)."""
    row = conn.execute("SELECT obj_description(to_regclass('bench.items'), 'pg_class')").fetchone()
    return row is not None and row[0] == f"tenantguard-bench {tenants}x{rows}"


def build_dataset(
    conn: psycopg.Connection[Any],
    tenants: int,
    rows_per_tenant: int,
    *,
    app_role: str = "tg_bench_app",
    owner_role: str = "tg_bench_owner",
    raw_role: str = "tg_bench_raw",
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Create (or reuse) the dataset as an administrator on an autocommit connection."""
    ds = Dataset(tenants, rows_per_tenant, app_role, raw_role)
    install(conn, InstallSpec(app_role=app_role, owner_role=owner_role))
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (raw_role,)).fetchone() is None:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS").format(sql.Identifier(raw_role)))
    if _exists(conn, tenants, rows_per_tenant):
        if progress:
            progress(tenants, tenants)
        return ds
    conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
    conn.execute(sql.SQL("CREATE SCHEMA bench AUTHORIZATION {}").format(sql.Identifier(owner_role)))
    for name in TABLES:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (tenant_id bigint NOT NULL, id bigint NOT NULL, "
                "created_at timestamptz NOT NULL, amount int NOT NULL, note text) "
                "WITH (fillfactor = 90)"
            ).format(sql.Identifier("bench", name))
        )
    # Generate server-side, in chunks of tenants, so progress can be shown.
    chunk = max(1, min(tenants, 200_000 // max(1, rows_per_tenant)))
    done = 0
    while done < tenants:
        hi = min(tenants, done + chunk)
        for name in TABLES:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT t, (t - 1) * %(r)s::bigint + g, "
                    "now() - ((%(r)s - g) * interval '1 minute'), (t + g) %% 1000, 'n' "
                    "FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) t, "
                    "generate_series(1::bigint, %(r)s::bigint) g"
                ).format(sql.Identifier("bench", name)),
                {"r": rows_per_tenant, "lo": done + 1, "hi": hi},
            )
        done = hi
        if progress:
            progress(done, tenants)
    for name in TABLES:
        ident = sql.Identifier("bench", name)
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(ident))
        conn.execute(
            sql.SQL("ALTER TABLE {} OWNER TO {}").format(ident, sql.Identifier(owner_role))
        )
    protect(conn, [QualifiedName("bench", "items")])  # adds the (tenant_id, id) index
    # items_noidx: the same policies, minus the composite index protect() would add.
    plan = protect(conn, [QualifiedName("bench", "items_noidx")], dry_run=True)
    with conn.transaction():
        for text in plan.statements:
            if not text.startswith("CREATE INDEX"):
                conn.execute(sql.SQL(text))
    tables = [QualifiedName("bench", n) for n in TABLES]
    for role in (app_role, raw_role):
        for stmt in grant_statements(tables, role):
            conn.execute(stmt)
    for name in TABLES:
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier("bench", name)))
    conn.execute(
        sql.SQL("COMMENT ON TABLE bench.items IS {}").format(
            sql.Literal(f"tenantguard-bench {tenants}x{rows_per_tenant}")
        )
    )
    return ds


def add_signed_shapes(
    conn: psycopg.Connection[Any],
    ds: Dataset,
    owner_role: str = "tg_bench_owner",
    key_owner_role: str = "tg_bench_keys",
) -> SigningKey:
    """Make *ds*'s database the signed one (idempotent); returns a live signing key.

    ``bench.items_plain`` keeps the unsigned shape beside the signed ``bench.items``: a
    copy of the plain helper (the inlinable SQL function ``install`` makes without
    ``--signed``) and the same policies calling it. A new key is added on every call
    (the first with ``create``, later ones with ``rotate``), so no secret is stored.
    """
    app = sql.Identifier(ds.app_role)
    has_plain = conn.execute("SELECT to_regclass('bench.items_plain') IS NOT NULL").fetchone()
    if not (has_plain and has_plain[0]):
        conn.execute(_helper_sql("tenantguard", "plain_tenant", "app.tenant_id", "tenant"))
        conn.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION tenantguard.plain_tenant() TO {}").format(app)
        )
        conn.execute("CREATE TABLE bench.items_plain (LIKE bench.items INCLUDING ALL)")
        conn.execute("INSERT INTO bench.items_plain SELECT * FROM bench.items")
        conn.execute(
            sql.SQL("ALTER TABLE bench.items_plain OWNER TO {}").format(sql.Identifier(owner_role))
        )
        spec = ProtectSpec(QualifiedName("bench", "items_plain"), pk_columns=("id",))
        with conn.transaction():
            for stmt in protect_statements(spec):
                text = render(stmt).replace('"current_tenant"', '"plain_tenant"')
                if not text.startswith("CREATE INDEX"):  # LIKE ... INCLUDING ALL has it
                    conn.execute(sql.SQL(text))
        conn.execute(sql.SQL("GRANT SELECT ON bench.items_plain TO {}").format(app))
        conn.execute("VACUUM (ANALYZE) bench.items_plain")
    # Signing: bench.items' policies become the verifying ones.
    install(
        conn,
        InstallSpec(
            app_role=ds.app_role, owner_role=owner_role, signed=True, key_owner_role=key_owner_role
        ),
    )
    protect(conn, [QualifiedName("bench", "items")])
    if any(k.live for k in list_keys(conn)):
        return rotate_key(conn)
    return create_key(conn)


def explain_list(conn: psycopg.Connection[Any], table: str, tenant_id: int, limit: int = 10) -> str:
    """EXPLAIN ANALYZE of the newest-N list as the app role would run it (RLS applies)."""
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
        rows = conn.execute(
            sql.SQL(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) "
                "SELECT id, amount FROM {} ORDER BY id DESC LIMIT {}"
            ).format(sql.Identifier("bench", table), sql.Literal(limit))
        ).fetchall()
    return "\n".join(r[0] for r in rows)
