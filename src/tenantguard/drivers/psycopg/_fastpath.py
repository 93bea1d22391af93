"""The hot path: the binding and one statement under a single Sync, lean.

psycopg's general ``conn.pipeline()`` doubles the client CPU of a point select
(measured: 46 -> 101 us per operation), because it is built for long batches: each
queued statement polls the socket and the results go through a queue. For the one
shape tenantguard needs on every request (binding + statement, autocommit) this
module drives libpq's pipeline mode directly, reusing psycopg's own query
conversion, prepared-statement cache and result handling, and the C-accelerated
``execute``/``fetch_many`` generators.

What it does per statement, and nothing more: convert the statement (psycopg's
cache), classify the converted bytes for the checkin guard (one dictionary lookup),
queue the prepared binding with its pre-encoded values and the statement, one Sync,
one flush, read the result sets. The binding's own result is checked at the libpq
level (its status only); it never reaches psycopg's cursor machinery.

It uses psycopg internals, so it is enabled only where the single capability check
in ``_internals`` passes (:data:`AVAILABLE`); otherwise, and whenever a situation is not the
simple one (a user pipeline, a non-autocommit connection, an open transaction), the
cursor falls back to ``conn.pipeline()``. Both paths send exactly the same
messages: one round trip.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from psycopg import errors as e
from psycopg import pq

if TYPE_CHECKING:
    from psycopg.abc import Params, PQGen, Query

    from tenantguard.core.session import ConnState

__all__ = ["AVAILABLE", "BindStatementMissing", "bound_execute_gen", "encode_values"]

from tenantguard.drivers.psycopg._internals import FAST as AVAILABLE

if AVAILABLE:  # the capability check in _internals found every name used below
    from psycopg import generators
    from psycopg._preparing import Prepare
    from psycopg.adapt import Transformer

    _NO, _SHOULD = Prepare.NO, Prepare.SHOULD

FATAL_ERROR = pq.ExecStatus.FATAL_ERROR
TUPLES_OK = pq.ExecStatus.TUPLES_OK
PIPELINE_OFF = pq.PipelineStatus.OFF
TEXT, BINARY = pq.Format.TEXT, pq.Format.BINARY
SQLSTATE = pq.DiagnosticField.SQLSTATE
BIND_NAME = b"_tg_bind"


# The binder's SQL is constant and its values are text: convert it once per text.
_BIND_SHAPES: dict[str, tuple[bytes, Any, Any]] = {}


class BindStatementMissing(Exception):
    """The server forgot a prepared statement (the binding, or psycopg's own); retry."""


def encode_values(values: tuple[str, ...], encoding: str) -> list[bytes]:
    """The binding's text values as libpq parameters (ASCII is the same in every encoding)."""
    return [v.encode() if v.isascii() else v.encode(encoding) for v in values]


def _bind_shape(cur: Any, bind_query: str, values: tuple[str, ...]) -> tuple[bytes, Any, Any]:
    bq = cur._convert_query(bind_query, values)
    shape = _BIND_SHAPES[bind_query] = (bq.query, bq.types, bq.formats)
    return shape


def forget_prepared(conn: Any) -> Generator[Any, Any, None]:
    """After a pipeline aborted at the binding: psycopg counts the statement's Parse, which
    the server skipped, as done. Forget psycopg's statements on both sides (DEALLOCATE
    ALL), so the retry prepares everything again. (A DEALLOCATE ALL psycopg sends after a
    ROLLBACK, or a DROP, drops the binding this way: the ninth review.)"""
    conn._prepared.clear()
    yield from conn._prepared.maintain_gen(conn)


def exact_bytes(pgq: Any) -> None:
    """A converted query that is a bytes subclass (the caller's own object, when there are
    no parameters): its equality and hash could be another statement's, in the
    classifier's cache and psycopg's prepared-statement cache alike. Its content, as
    exact bytes, is what is classified, cached and sent."""
    pgq.query = bytes(memoryview(pgq.query))


def bound_execute_gen(
    cur: Any,
    st: ConnState,
    bind: tuple[str, tuple[str, ...]],
    bind_params: list[bytes],
    query: Query,
    params: Params | None,
    prepare: bool | None,
    binary: bool | None,
) -> PQGen[None]:
    """Send ``bind`` + ``query`` in one pipeline under one Sync and process the results.

    Autocommit connections outside a transaction only (the pool default): the two
    form one implicit transaction, so the transaction-local binding lasts exactly as
    long as the query. ``bind_params`` are the binding's values, already encoded.
    The binding is prepared once per connection unless ``prepare_threshold`` is None
    (PgBouncer < 1.21); ``conn._tg_binding_prepared`` tracks it and is cleared on DISCARD.
    """
    conn = cur._conn
    pgconn = conn.pgconn
    # psycopg's Cursor._start_query, without its two generators: on an autocommit
    # connection outside a transaction (the only case here) it sends nothing.
    if cur._closed:
        raise e.InterfaceError("the cursor is closed")
    cur._reset()
    last = cur._last_query
    if not last or last is not query:
        cur._last_query = None
        cur._tx = Transformer(cur)
    cur._tg_exposed = False  # (a new Transformer reads cur.connection: not the caller)
    bind_query = bind[0]
    shape = _BIND_SHAPES.get(bind_query)
    if shape is None:
        shape = _bind_shape(cur, bind_query, bind[1])
    pgq = cur._convert_query(query, params)
    if type(pgq.query) is not bytes:
        exact_bytes(pgq)
    # The bytes the server will run, classified and screened before anything is sent
    # (the classifier's cache and screen()'s first-statement case, inlined).
    effects = st.classifier.cached(pgq.query)
    if effects is None:
        effects = st.classifier.effects(pgq.query)
    if effects or not st.lexer_ok:
        st.screen(effects, pgconn)
    else:
        st.lexer_ok = False
    prepared = conn._prepared
    prep, name = prepared.get(pgq, prepare)
    use_prepared_bind = prepared.prepare_threshold is not None
    prepare_bind = use_prepared_bind and not conn._tg_binding_prepared
    pgconn.enter_pipeline_mode()
    try:
        if prepare_bind:
            pgconn.send_prepare(BIND_NAME, shape[0], param_types=shape[1])
        if use_prepared_bind:
            pgconn.send_query_prepared(BIND_NAME, bind_params, param_formats=shape[2])
        else:
            pgconn.send_query_params(
                shape[0], bind_params, param_types=shape[1], param_formats=shape[2]
            )
        if prep is _NO:
            cur._execute_send(pgq, force_extended=True, binary=binary)
        else:
            if prep is _SHOULD:
                cur._send_prepare(name, pgq)
            # (psycopg's _send_query_prepared outside a pipeline: the public libpq call)
            fmt = cur.format if binary is None else BINARY if binary else TEXT
            pgconn.send_query_prepared(
                name, pgq.params, param_formats=pgq.formats, result_format=fmt
            )
        key = prepared.maybe_add_to_cache(pgq, prep, name)
        pgconn.pipeline_sync()
        # Flush, then one result set per queued message (each ends with a NULL), then
        # the PIPELINE_SYNC: the C generators, no per-result Python.
        first = yield from generators.execute(pgconn)  # the binding (or its PREPARE)
        bound = (yield from generators.fetch_many(pgconn)) if prepare_bind else first
        qprep = (yield from generators.fetch_many(pgconn)) if prep is _SHOULD else None
        results = yield from generators.fetch_many(pgconn)
        yield from generators.fetch_many(pgconn)  # the PIPELINE_SYNC
    finally:
        if pgconn.pipeline_status != PIPELINE_OFF:
            # Results left unread after a failure mean a broken connection; the pool
            # discards it.
            try:  # noqa: SIM105 (the hot path: contextlib.suppress costs three frames)
                pgconn.exit_pipeline_mode()
            except e.OperationalError:
                pass
    if key is not None:
        prepared.validate(key, prep, name, results)
    if (
        prep is not _NO
        and results
        and results[0].status == FATAL_ERROR
        and results[0].error_field(SQLSTATE) == b"26000"
    ):
        # psycopg's prepared statement is gone from the server (something it did not see
        # dropped it: a DEALLOCATE inside a function, say). Nothing ran: the implicit
        # transaction aborted at its Bind. Forget psycopg's statements on both sides and
        # retry once; psycopg prepares again from scratch.
        prepared.clear()
        yield from prepared.maintain_gen(conn)  # DEALLOCATE ALL: the binding goes too
        conn._tg_binding_prepared = False
        raise BindStatementMissing()
    if len(bound) != 1 or bound[0].status != TUPLES_OK or qprep is not None:
        # The binding's result, checked at the libpq level: one row set, nothing else.
        try:
            _check_before(cur, first, bound, qprep, prepare_bind, use_prepared_bind)
        except BindStatementMissing:
            yield from forget_prepared(conn)
            raise
    elif prepare_bind:
        conn._tg_binding_prepared = True
    cur._check_results(results)
    cur._set_results(results)
    cur._last_query = query
    if prepared._to_flush:  # statements to DEALLOCATE (psycopg's maintain_gen, when any)
        yield from prepared.maintain_gen(conn)


def _check_before(
    cur: Any,
    first: list[Any],
    bound: list[Any],
    qprep: list[Any] | None,
    prepare_bind: bool,
    use_prepared_bind: bool,
) -> None:
    """The results before the statement's: retry, raise, or (all fine) return."""
    conn = cur._conn
    if prepare_bind and first and first[0].status != FATAL_ERROR:
        conn._tg_binding_prepared = True
    if (
        use_prepared_bind
        and not prepare_bind
        and bound
        and bound[0].status == FATAL_ERROR
        and bound[0].error_field(SQLSTATE) == b"26000"
    ):
        # Nothing ran: the pipeline aborted at the binding. Re-prepare and retry.
        conn._tg_binding_prepared = False
        raise BindStatementMissing()
    before = (first if prepare_bind else []) + bound + (qprep or [])
    for res in before:
        if res.status == FATAL_ERROR:
            raise e.error_from_result(res, encoding=cur._encoding)
    if len(bound) != 1 or bound[0].status != TUPLES_OK:
        cur._check_results(bound)  # PIPELINE_ABORTED and anything unexpected
        raise e.InternalError("the tenant binding returned no row set")
