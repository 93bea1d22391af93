"""What the sync and async tenant connection classes share.

The classes themselves are in :mod:`._connection_async` (the source) and
:mod:`._connection` (generated from it by ``tools/async_to_sync.py``). The binding rides
in the same network round trip as the statement that opens the transaction: both are
queued in one pipeline and sent under a single Sync. With an autocommit connection (the
pool default) the two then form one implicit transaction, so ``set_config(.., true)``
lasts exactly as long as the statement. Inside ``with conn.transaction():`` the binding is
queued with the ``BEGIN``; savepoints nested below it are not rebound.

A connection with no tenantguard state (``_tg_state is None``) behaves like plain psycopg;
the pools set the state when they create the connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from psycopg.abc import Params, Query
from psycopg.pq import PipelineStatus, TransactionStatus

from tenantguard.core.session import ConnState
from tenantguard.drivers.psycopg import _reuse

__all__ = [
    "IDLE",
    "NEEDS_TX",
    "NO_PARAMS",
    "REUSE",
    "TrackedHandlers",
    "fast_path_open",
    "guarded_attribute",
    "held",
    "in_pipeline",
    "leased",
    "marking",
    "refuse_tpc",
    "registering",
    "screen_wait",
    "screened",
    "untyped",
]


def untyped(obj: object) -> Any:
    """*obj* as ``Any``: psycopg's ``execute()`` is overloaded on Query vs Template, and
    the overrides here forward the caller's arguments to it unchanged."""
    return obj


IDLE = TransactionStatus.IDLE
PIPELINE_OFF = PipelineStatus.OFF
REUSE = _reuse.ENABLED  # (only where _internals' capability check passed)

NEEDS_TX = (
    "{what} cannot carry the tenant binding in autocommit mode outside a transaction; "
    "wrap it in `with conn.transaction():`"
)


def in_pipeline(conn: Any) -> bool:
    """In a ``conn.pipeline()`` block (libpq's pipeline status: public API)."""
    return bool(conn.pgconn.pipeline_status != PIPELINE_OFF)


def held(conn: Any) -> None:
    """Raise :class:`LeaseNotHeld` when another thread or task holds *conn*'s lease.

    For operations that send something without binding (``commit()``, a server cursor's
    ``FETCH``): from a reference kept past a lease they would land in the transaction of
    the tenant that holds the connection now. Between leases (in the pool) they are let
    through: psycopg_pool itself rolls back and closes connections there.
    """
    st = conn._tg_state
    if st is not None and st.lease is not None and st.owner_of() != st.owner:
        st.check_owner()


def leased(conn: Any) -> None:
    """Raise :class:`LeaseNotHeld` unless the caller holds *conn*'s lease now.

    Stricter than :func:`held`: also between leases, while the connection waits in the pool.
    For what neither psycopg_pool nor tenantguard does to a pooled connection (cancel,
    pipelines, notifications, handlers, factories, adapters, transaction characteristics):
    from a reference kept past a lease, each would reach the next tenant's lease.
    """
    st = conn._tg_state
    if st is not None and (st.lease is None or st.owner_of() != st.owner):
        st.check_owner()


def marking(prop: Any) -> Any:
    """*prop* (a psycopg connection property) with a setter that marks the connection:
    what a lease changes on the Python object, the next lease would inherit."""

    def fset(self: Any, value: Any) -> None:
        leased(self)
        self._tg_client_changed = True
        prop.fset(self, value)

    return property(prop.fget, fset, doc=prop.__doc__)


def guarded_attribute(name: str) -> Any:
    """A plain psycopg connection attribute (``row_factory``...) whose assignment needs the
    lease (from a kept reference it would shape another lease's results) and marks the
    connection (set during a lease, the next lease would inherit it)."""
    slot = "_tg_attr_" + name

    def fget(self: Any) -> Any:
        return self.__dict__[slot]

    def fset(self: Any, value: Any) -> None:
        leased(self)
        self.__dict__[slot] = value
        self._tg_client_changed = True  # the next lease would inherit it

    return property(fget, fset)


def registering(conn: Any) -> None:
    """Called before a dumper, loader or type is registered on a pool connection's adapters:
    only by the lease's holder, and the connection is replaced at checkin."""
    leased(conn)
    conn._tg_client_changed = True


TPC_REFUSED = (
    "two-phase commit (tpc_*) is not available on a tenant lease: a prepared transaction "
    "keeps its locks past the lease, the connection and a restart, and the login could end "
    "another tenant's; nothing was sent"
)
TPC_HINT = "run two-phase commit from a dedicated connection outside the app pool"


def refuse_tpc(conn: Any) -> None:
    if conn._tg_state is not None:
        from tenantguard.errors import UnsupportedOperation

        raise UnsupportedOperation(TPC_REFUSED, hint=TPC_HINT)


NO_PARAMS: Any = object()

#: The value of ``_tg_client_changed`` that says SQL went out unclassified (see
#: :func:`screen_wait`): the connection is replaced, never handed to another lease.
UNSCREENED = "unscreened_sql"

#: psycopg generators (``gen.__name__``) that send no SQL text of the caller's: commands
#: psycopg writes itself (COMMIT, ROLLBACK, BEGIN, SAVEPOINT, SET of a transaction
#: characteristic, FETCH/MOVE/CLOSE of a named cursor, a pipeline's Sync) and the data of
#: a COPY or a stream already started. Named, not looked up: a psycopg that renames one
#: only makes that operation replace its connection at checkin (tests catch it).
CONTROL_GENERATORS = frozenset(
    {
        "_commit_gen",
        "_rollback_gen",
        "_set_autocommit_gen",
        "_set_isolation_level_gen",
        "_set_read_only_gen",
        "_set_deferrable_gen",
        "notifies",
        "_enter_gen",  # a transaction's BEGIN/SAVEPOINT; entering pipeline mode
        "_exit_gen",  # COMMIT/ROLLBACK/RELEASE; leaving pipeline mode
        "_sync_gen",
        "_fetch_gen",  # a named cursor's FETCH; a pipeline's results
        "_scroll_gen",
        "_close_gen",
        "_stream_fetchone_gen",
        "_read_gen",
        "_read_row_gen",
        "_end_copy_out_gen",
        "copy_to",
        "copy_end",
    }
)


def screen_wait(conn: Any, st: ConnState, gen: Any) -> None:
    """Before psycopg runs *gen* on a tenant connection (``conn.wait()``, which every
    cursor, transaction, pipeline and COPY of psycopg goes through).

    SQL tenantguard classified and bound passes (``_tg_pass``, set by its cursors just
    before they call psycopg, consumed here), as does its own internal cursor. Any other
    SQL text (``psycopg.Cursor(conn)``, ``ClientCursor``, ``RawCursor``, a tenantguard
    cursor driven through psycopg's base methods) was neither classified nor bound: the
    connection is marked so that it is closed at checkin, never reaching another lease,
    and from anyone but the lease's holder it is refused before anything is sent. The
    mark comes first: a lease starting concurrently either sees it or owns the
    connection before the ownership check below, which then refuses.
    """
    if conn._tg_pass:
        conn._tg_pass = False
        return
    holder = st.owner_of() == st.owner
    if getattr(gen, "__name__", None) not in CONTROL_GENERATORS and not _internal(conn, gen):
        conn._tg_client_changed = UNSCREENED
        if not holder:
            st.check_owner()  # raises: the lease ended, or belongs to another thread/task
        return
    if not holder:
        if st.lease is not None:
            st.check_owner()  # a kept reference inside another tenant's lease: refused
        elif not _internal(conn, gen):
            conn._tg_client_changed = True  # between leases: replaced before the next one


def _internal(conn: Any, gen: Any) -> bool:
    """*gen* belongs to the connection's internal cursor (the binding, the guard)."""
    frame = getattr(gen, "gi_frame", None)
    if frame is None or conn._tg_internal_cursor is None:
        return False
    return frame.f_locals.get("self") is conn._tg_internal_cursor


def screened(
    st: ConnState, query: Query, pgconn: Any, params_seq: Iterable[Params]
) -> Iterator[Params]:
    """*params_seq* for ``executemany``, each statement screened before psycopg sends it.

    psycopg converts the query's placeholders for each parameter set, and sends the text
    raw for a ``None`` one: the same query text can be two different statements. The first
    set is screened before anything is sent; each later one before psycopg takes it.
    """
    items = iter(params_seq)
    for params in items:
        st.note(query, pgconn, params is not None)
        yield params


def fast_path_open(conn: Any) -> bool:
    """The hot path applies: an autocommit connection, idle, not in a user pipeline."""
    return bool(
        conn._tg_fast_path
        and conn._pipeline is None
        and conn._autocommit
        and conn.pgconn.transaction_status == IDLE
    )


class TrackedHandlers:
    """Notice and notify handlers added through a lease, kept count of (the methods are sync
    on both psycopg connection classes): the checkin guard replaces a connection that still
    has one, which would otherwise receive the next tenant's notices. From a reference kept
    past its lease they raise :class:`LeaseNotHeld` (they would hook another lease)."""

    _tg_added_handlers: tuple[Any, ...] = ()

    def add_notice_handler(self, callback: Any) -> None:
        leased(self)
        super().add_notice_handler(callback)  # type: ignore[misc]
        self._tg_added_handlers = (*self._tg_added_handlers, callback)

    def remove_notice_handler(self, callback: Any) -> None:
        leased(self)
        super().remove_notice_handler(callback)  # type: ignore[misc]
        self._tg_added_handlers = tuple(h for h in self._tg_added_handlers if h is not callback)

    def add_notify_handler(self, callback: Any) -> None:
        leased(self)
        super().add_notify_handler(callback)  # type: ignore[misc]
        self._tg_added_handlers = (*self._tg_added_handlers, callback)

    def remove_notify_handler(self, callback: Any) -> None:
        leased(self)
        super().remove_notify_handler(callback)  # type: ignore[misc]
        self._tg_added_handlers = tuple(h for h in self._tg_added_handlers if h is not callback)
