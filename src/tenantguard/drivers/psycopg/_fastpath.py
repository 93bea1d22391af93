"""The hot path: the binding and one statement under a single Sync, lean.

psycopg's general ``conn.pipeline()`` doubles the client CPU of a point select
(measured: 46 -> 101 us per operation), because it is built for long batches: each
queued statement polls the socket and the results go through a queue. For the one
shape tenantguard needs on every request (binding + statement, autocommit) this
module drives libpq's pipeline mode directly, reusing psycopg's own query
conversion, prepared-statement cache and result handling, and the C-accelerated
``send``/``fetch_many`` generators.

It uses psycopg internals, so it is enabled only for the psycopg versions it was
tested with (:data:`AVAILABLE`); otherwise, and whenever a situation is not the
simple one (a user pipeline, a non-autocommit connection), the cursor falls back to
``conn.pipeline()``. Both paths send exactly the same messages: one round trip.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as e
from psycopg import pq

if TYPE_CHECKING:
    from psycopg.abc import Params, PQGen, Query

__all__ = ["AVAILABLE", "BindStatementMissing", "bound_execute_gen"]

try:
    from psycopg import generators
    from psycopg._preparing import Prepare

    _VERSION = tuple(int(x) for x in psycopg.__version__.split(".")[:2])
    AVAILABLE = (3, 2) <= _VERSION < (3, 4) and all(
        hasattr(psycopg.Cursor, name)
        for name in (
            "_start_query",
            "_convert_query",
            "_get_prepared",
            "_execute_send",
            "_send_prepare",
            "_send_query_prepared",
            "_check_results",
            "_set_results",
        )
    )
except ImportError:  # pragma: no cover - a psycopg without these internals
    AVAILABLE = False

FATAL_ERROR = pq.ExecStatus.FATAL_ERROR
BIND_NAME = b"_tg_bind"


_BIND_SHAPES: dict[Any, tuple[bytes, Any, Any]] = {}


class BindStatementMissing(Exception):
    """The server forgot the prepared binding (DEALLOCATE ALL / DISCARD ALL); retry."""


def _raise_first_error(results: list[Any], encoding: str) -> None:
    for res in results:
        if res.status == FATAL_ERROR:
            raise e.error_from_result(res, encoding=encoding)


def bound_execute_gen(
    cur: Any,
    bind: tuple[str, tuple[str, ...]],
    query: Query,
    params: Params | None,
    *,
    prepare: bool | None,
    binary: bool | None,
) -> PQGen[None]:
    """Send ``bind`` + ``query`` in one pipeline under one Sync and process the results.

    Autocommit connections only (the pool default): the two form one implicit
    transaction, so the transaction-local binding lasts exactly as long as the query.
    The binding is prepared once per connection unless ``prepare_threshold`` is None
    (PgBouncer < 1.21); ``conn._tg_bind_ready`` tracks it and is cleared on DISCARD.
    """
    conn = cur._conn
    pgconn = conn.pgconn
    yield from cur._start_query(query)
    bind_query, bind_values = bind
    shape = _BIND_SHAPES.get(bind_query)  # (query bytes, types, formats): the binder's SQL
    if shape is None:  # is constant and its values are text, so convert it once
        bq = cur._convert_query(bind_query, bind_values)
        shape = _BIND_SHAPES[bind_query] = (bq.query, bq.types, bq.formats)
    bind_sql, bind_types, bind_formats = shape
    bind_params = [v.encode(cur._encoding) for v in bind_values]
    pgq = cur._convert_query(query, params)
    prep, name = cur._get_prepared(pgq, prepare)
    use_prepared_bind = conn.prepare_threshold is not None
    prepare_bind = use_prepared_bind and not conn._tg_bind_ready
    pgconn.enter_pipeline_mode()
    try:
        if prepare_bind:
            pgconn.send_prepare(BIND_NAME, bind_sql, param_types=bind_types)
        if use_prepared_bind:
            pgconn.send_query_prepared(BIND_NAME, bind_params, param_formats=bind_formats)
        else:
            pgconn.send_query_params(
                bind_sql, bind_params, param_types=bind_types, param_formats=bind_formats
            )
        if prep is Prepare.NO:
            cur._execute_send(pgq, force_extended=True, binary=binary)
        else:
            if prep is Prepare.SHOULD:
                cur._send_prepare(name, pgq)
            cur._send_query_prepared(name, pgq, binary=binary)
        key = conn._prepared.maybe_add_to_cache(pgq, prep, name)
        pgconn.pipeline_sync()
        yield from generators.send(pgconn)
        before: list[Any] = []
        if prepare_bind:
            before += yield from generators.fetch_many(pgconn)
        before += yield from generators.fetch_many(pgconn)
        if prep is Prepare.SHOULD:
            before += yield from generators.fetch_many(pgconn)
        results = yield from generators.fetch_many(pgconn)
        yield from generators.fetch_many(pgconn)  # the PIPELINE_SYNC
    finally:
        if pgconn.pipeline_status != pq.PipelineStatus.OFF:
            # Results left unread after a failure mean a broken connection; the pool
            # discards it.
            with contextlib.suppress(e.OperationalError):
                pgconn.exit_pipeline_mode()
    encoding = cur._encoding
    if prepare_bind and before and before[0].status != FATAL_ERROR:
        conn._tg_bind_ready = True
    if (
        use_prepared_bind
        and not prepare_bind
        and before
        and before[0].status == FATAL_ERROR
        and before[0].error_field(pq.DiagnosticField.SQLSTATE) == b"26000"
    ):
        # Nothing ran: the pipeline aborted at the binding. Re-prepare and retry.
        conn._tg_bind_ready = False
        raise BindStatementMissing()
    _raise_first_error(before, encoding)
    if key is not None:
        conn._prepared.validate(key, prep, name, results)
    cur._check_results(results)
    cur._set_results(results)
    cur._last_query = query
    yield from conn._prepared.maintain_gen(conn)
