"""Benchmark variants: each is its own client code path, as a user would write it.

A variant opens shared resources once (``open``), hands each client thread a
*session* whose methods run one operation and return the rows it saw, and closes.
Every result row carries ``tenant_id`` so the harness counts cross-tenant rows.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, LiteralString, Protocol

import psycopg
from psycopg import sql

from tenantguard.core.context import tenant
from tenantguard.drivers.psycopg import AsyncTenantPool, TenantPool

__all__ = ["VARIANTS", "WORKLOADS", "Session", "Variant"]

WORKLOADS = ("select", "list", "insert", "update")
Rows = list[tuple[Any, ...]]

# Fresh ids for inserts, above the generated range (set by the harness).
_insert_ids = itertools.count(10**12)
_ids_lock = threading.Lock()


def start_insert_ids(after: int) -> None:
    """Continue insert ids above *after* (a reused dataset keeps earlier runs' rows)."""
    global _insert_ids
    with _ids_lock:
        _insert_ids = itertools.count(max(10**12, after + 1))


def next_insert_id() -> int:
    with _ids_lock:
        return next(_insert_ids)


class Session(Protocol):
    def run(self, workload: str, tid: int, key: int) -> Rows: ...
    def close(self) -> None: ...


def _queries(table: str, hand_where: bool) -> dict[str, sql.Composed]:
    t = sql.Identifier("bench", table)
    w = sql.SQL("tenant_id = %(t)s AND ") if hand_where else sql.SQL("")
    lw = sql.SQL("WHERE tenant_id = %(t)s ") if hand_where else sql.SQL("")
    return {
        "select": sql.SQL("SELECT tenant_id, id, amount FROM {} WHERE {}id = %(k)s").format(t, w),
        "list": sql.SQL("SELECT tenant_id, id, amount FROM {} {}ORDER BY id DESC LIMIT 10").format(
            t, lw
        ),
        "insert": sql.SQL(
            "INSERT INTO {} (tenant_id, id, created_at, amount) VALUES (%(t)s, %(k)s, now(), 1) "
            "RETURNING tenant_id"
        ).format(t),
        "update": sql.SQL(
            "UPDATE {} SET amount = amount + 1 WHERE {}id = %(k)s RETURNING tenant_id"
        ).format(t, w),
    }


def _params(workload: str, tid: int, key: int) -> dict[str, int]:
    return {"t": tid, "k": next_insert_id() if workload == "insert" else key}


@dataclass
class Variant:
    """A named client code path. ``kind`` is ``sync`` or ``async``."""

    name: str
    description: str
    kind: str
    factory: Callable[[str, dict[str, Any]], Any]  # (dsn, options) -> VariantRuntime


# ----------------------------------------------------------------- sync, per-thread


class _ConnSession:
    def __init__(self, dsn: str, queries: dict[str, sql.Composed], style: str, **kw: Any) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True, **kw)
        self.q = queries
        self.style = style
        self.cur = self.conn.cursor()

    def run(self, workload: str, tid: int, key: int) -> Rows:
        q, p = self.q[workload], _params(workload, tid, key)
        cur = self.cur
        if self.style == "raw":
            cur.execute(q, p)
        elif self.style == "naive":  # BEGIN / set_config / query / COMMIT: 4 round trips
            with self.conn.transaction():
                cur.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tid),))
                cur.execute(q, p)
                return cur.fetchall()
        else:  # "session": SET on the session, then the query (unsafe with pools)
            cur.execute("SELECT set_config('app.tenant_id', %s, false)", (str(tid),))
            cur.execute(q, p)
        return cur.fetchall()

    def close(self) -> None:
        self.conn.close()


class _ConnRuntime:
    def __init__(self, dsn: str, queries: dict[str, sql.Composed], style: str, **kw: Any):
        self.dsn, self.q, self.style, self.kw = dsn, queries, style, kw

    def session(self) -> _ConnSession:
        return _ConnSession(self.dsn, self.q, self.style, **self.kw)

    def close(self) -> None:
        pass


# ----------------------------------------------------------------- tenantguard pools


class _UnguardedPool(TenantPool):
    """TenantPool with the checkin guard switched off: only to measure the guard's cost."""

    def _checkin(self, conn: Any) -> None:
        if conn._tg_state is not None:
            conn._tg_state.end_lease()


class _PoolSession:
    def __init__(self, pool: TenantPool, queries: dict[str, sql.Composed]) -> None:
        self.pool, self.q = pool, queries

    def run(self, workload: str, tid: int, key: int) -> Rows:
        with tenant(tid), self.pool.connection() as conn:
            return conn.execute(self.q[workload], _params(workload, tid, key)).fetchall()

    def close(self) -> None:
        pass


class _PsycopgPoolSession:
    def __init__(self, pool: Any, queries: dict[str, sql.Composed]) -> None:
        self.pool, self.q = pool, queries

    def run(self, workload: str, tid: int, key: int) -> Rows:
        with self.pool.connection() as conn:
            return list(conn.execute(self.q[workload], _params(workload, tid, key)).fetchall())

    def close(self) -> None:
        pass


class _PsycopgPoolRuntime:
    """Plain psycopg_pool with the WHERE written by hand (what a user with a pool keeps)."""

    def __init__(self, dsn: str, queries: dict[str, sql.Composed], size: int, **kw: Any):
        from psycopg_pool import ConnectionPool

        self.pool: ConnectionPool[Any] = ConnectionPool(
            dsn, min_size=size, max_size=size, kwargs={"autocommit": True, **kw}, open=True
        )
        self.pool.wait(timeout=30)
        self.q = queries

    def session(self) -> _PsycopgPoolSession:
        return _PsycopgPoolSession(self.pool, self.q)

    def close(self) -> None:
        self.pool.close()


class _PoolRuntime:
    def __init__(
        self,
        dsn: str,
        queries: dict[str, sql.Composed],
        size: int,
        cls: type[TenantPool],
        check_role: bool = True,
        signing_key: Any = None,
        **kw: Any,
    ):
        self.pool = cls(
            dsn,
            min_size=size,
            max_size=size,
            tenant_kind="bigint",
            kwargs=kw or None,
            check_role=check_role,
            signing_key=signing_key,
        )
        self.pool.pool.wait(timeout=30)
        self.q = queries

    def session(self) -> _PoolSession:
        return _PoolSession(self.pool, self.q)

    def close(self) -> None:
        self.pool.close()


class _AsyncRuntime:
    """AsyncTenantPool driven by an event loop in its own thread."""

    def __init__(self, dsn: str, queries: dict[str, sql.Composed], size: int, **kw: Any):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.q = queries
        self.pool = AsyncTenantPool(
            dsn, min_size=size, max_size=size, tenant_kind="bigint", kwargs=kw or None
        )
        self._call(self.pool.open(wait=True))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def run_async(self, workload: str, tid: int, key: int) -> Rows:
        with tenant(tid):
            async with self.pool.connection() as conn:
                cur = await conn.execute(self.q[workload], _params(workload, tid, key))
                return await cur.fetchall()

    def close(self) -> None:
        self._call(self.pool.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _tables(opts: dict[str, Any]) -> str:
    return str(opts.get("table", "items"))


def _raw(dsn: str, o: dict[str, Any]) -> _ConnRuntime:
    return _ConnRuntime(o["raw_dsn"], _queries(_tables(o), True), "raw", **o.get("conn_kw", {}))


def _naive(dsn: str, o: dict[str, Any]) -> _ConnRuntime:
    return _ConnRuntime(dsn, _queries(_tables(o), False), "naive", **o.get("conn_kw", {}))


def _session_set(dsn: str, o: dict[str, Any]) -> _ConnRuntime:
    return _ConnRuntime(dsn, _queries(_tables(o), False), "session", **o.get("conn_kw", {}))


def _tg(dsn: str, o: dict[str, Any]) -> _PoolRuntime:
    return _PoolRuntime(
        dsn, _queries(_tables(o), False), o["size"], TenantPool, **o.get("conn_kw", {})
    )


def _tg_signed(dsn: str, o: dict[str, Any]) -> _PoolRuntime:
    # The signed dataset's bench.items (install --signed); its unsigned twin is
    # "tenantguard" on table items_plain of the same database.
    return _PoolRuntime(
        dsn,
        _queries(_tables(o), False),
        o["size"],
        TenantPool,
        signing_key=o["signing_key"],
        **o.get("conn_kw", {}),
    )


def _pool_where(dsn: str, o: dict[str, Any]) -> _PsycopgPoolRuntime:
    return _PsycopgPoolRuntime(
        o["raw_dsn"], _queries(_tables(o), True), o["size"], **o.get("conn_kw", {})
    )


def _tg_where_bypass(dsn: str, o: dict[str, Any]) -> _PoolRuntime:
    # The same TenantPool client path, on a BYPASSRLS role with the WHERE by hand: the
    # only difference from "tenantguard" is RLS itself. (The role check must be off.)
    return _PoolRuntime(
        o["raw_dsn"],
        _queries(_tables(o), True),
        o["size"],
        TenantPool,
        check_role=False,
        **o.get("conn_kw", {}),
    )


def _tg_noguard(dsn: str, o: dict[str, Any]) -> _PoolRuntime:
    return _PoolRuntime(
        dsn, _queries(_tables(o), False), o["size"], _UnguardedPool, **o.get("conn_kw", {})
    )


def _tg_async(dsn: str, o: dict[str, Any]) -> _AsyncRuntime:
    return _AsyncRuntime(dsn, _queries(_tables(o), False), o["size"], **o.get("conn_kw", {}))


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant(
            "raw",
            "psycopg autocommit, WHERE tenant_id = %s by hand, RLS bypassed (baseline)",
            "sync",
            _raw,
        ),
        Variant(
            "pool_where",
            "psycopg_pool + WHERE by hand, RLS bypassed (a user with a pool)",
            "sync",
            _pool_where,
        ),
        Variant(
            "tg_where_bypass",
            "TenantPool path on a BYPASSRLS role, WHERE by hand (isolates RLS cost)",
            "sync",
            _tg_where_bypass,
        ),
        Variant(
            "naive",
            "BEGIN; set_config(.., true); query; COMMIT, each its own round trip",
            "sync",
            _naive,
        ),
        Variant(
            "session_set",
            "set_config(.., false) on the session, then the query (unsafe)",
            "sync",
            _session_set,
        ),
        Variant(
            "tenantguard",
            "TenantPool: binding pipelined with the query, checkin guard on",
            "sync",
            _tg,
        ),
        Variant(
            "tenantguard_noguard",
            "TenantPool with the checkin guard off (guard cost)",
            "sync",
            _tg_noguard,
        ),
        Variant("tenantguard_async", "AsyncTenantPool, one task per client", "async", _tg_async),
        Variant(
            "tenantguard_signed",
            "TenantPool binding signed contexts (install --signed), checkin guard on",
            "sync",
            _tg_signed,
        ),
    ]
}

BIND: LiteralString = "SELECT set_config('app.tenant_id', %s, true)"
