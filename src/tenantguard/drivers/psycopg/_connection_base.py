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
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg.abc import Params, Query
from psycopg.pq import PipelineStatus, TransactionStatus
from psycopg.sql import Composable, Composed

from tenantguard.core.session import ConnState
from tenantguard.drivers.psycopg import _reuse
from tenantguard.drivers.psycopg._internals import (
    CONTROL_CODES,
    GUARDED_PREFIX,
    SETTER_CODES,
    TEMPLATES,
    handler_lists,
)

__all__ = [
    "IDLE",
    "NEEDS_TX",
    "NO_PARAMS",
    "PIPELINE_ABORTED",
    "REUSE",
    "TrackedHandlers",
    "attributes_replaced",
    "exact",
    "guarded_attribute",
    "held",
    "in_pipeline",
    "int_attribute",
    "leased",
    "marking",
    "note_attributes",
    "refuse_tpc",
    "registering",
    "rendered",
    "screen_wait",
    "screened",
    "track_handlers",
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
    slot = GUARDED_PREFIX + name

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
#: ... and after a pipeline (or an executemany, which psycopg pipelines) raised.
PIPELINE_ABORTED = "pipeline_aborted"

#: The classified send's pass is taken only by the lease's holder (tests turn it off, as
#: the control of an attack that stole it).
PASS_NEEDS_HOLDER = True


def exact(value: Any, kind: type, what: str) -> None:
    """*value* is exactly a *kind* (not a subclass): psycopg writes a named cursor's name
    and counts into SQL text, and a subclass's ``__str__`` would be SQL there."""
    if type(value) is not kind:
        raise TypeError(
            f"a named cursor's {what} must be a {kind.__name__}, not {type(value).__name__}"
        )


def int_attribute(name: str) -> Any:
    """A named cursor's count attribute (``arraysize``, ``itersize``) that holds only an
    ``int``: psycopg reads it again when it writes FETCH, so a check before the call
    could be raced (a signal handler changed it in between: the tenth review)."""
    slot = "_tg_" + name

    def fget(self: Any) -> Any:
        return self.__dict__[slot]

    def fset(self: Any, value: Any) -> None:
        exact(value, int, name)
        self.__dict__[slot] = value

    return property(fget, fset)


#: Query types the fast path hands psycopg as they are: psycopg reads a kept query only
#: through ``bool()`` and identity, and these define neither (the converted bytes are what
#: the fast path classifies). Passing a constant ``sql.Composed`` as is keeps psycopg's
#: Transformer across statements, as with a constant ``str``; its rendering is always
#: exact bytes (``b"".join``). Not ``sql.SQL``: it renders to what its text's ``encode()``
#: returns, and a ``str`` subclass's bytes subclass became a key of psycopg's process-wide
#: query cache, compared in other tenants' lookups (the fourteenth review).
KEPT_AS_IS: frozenset[type] = frozenset({str, bytes, Composed})


#: Parameter classes whose dumpers psycopg may cache for the next lease: plain values whose
#: class (and metaclass, ``type``) compares and hashes by identity. psycopg's Transformer
#: caches a dumper per parameter class and stays on a cursor that runs the same query object
#: again, the next lease's too; a lookup there compares classes, so a class whose metaclass
#: defines ``__eq__`` would run in that lease. Containers (lists, ranges) are not plain:
#: their items' classes are cached too. A statement with any other parameter leaves a new
#: Transformer for the next lease (the cursors' fast path checks, ``_reuse.release`` acts).
PLAIN_VALUES: frozenset[type] = frozenset(
    {int, str, float, bool, type(None), bytes, Decimal, UUID, date, datetime, time, timedelta}
)


def rendered(query: Any, cursor: Any) -> Any:
    """*query* as an object whose text cannot change between classifying and sending.

    A ``str`` or ``bytes`` subclass could compare equal to a statement the classifier
    already judged (its cache is keyed on the query) while its ``encode()`` or buffer
    is another, and psycopg's prepared-statement cache keys on it too: it becomes an
    exact ``str`` or ``bytes``. A ``sql.Composable`` is rendered once, with the cursor's
    adapters, into exact bytes (a value whose ``__str__`` changes between renderings, or a
    dumper registered on the cursor, would otherwise show the classifier one statement and
    the server another). t-strings pass (psycopg composes them). Anything else: TypeError.

    psycopg keeps the query on the cursor (``_last_query``) and reads it at the start of the
    cursor's next statement, on a reused cursor the next lease's: what passes here carries
    none of the caller's code (the twelfth review).
    """
    kind = type(query)
    if kind is str or kind is bytes:
        return query
    if isinstance(query, Composable):
        query = query.as_bytes(cursor)
        return query if type(query) is bytes else bytes(memoryview(query))
    if isinstance(query, str):
        return str.__str__(query)  # the characters, as an exact str
    if isinstance(query, (bytes, bytearray, memoryview)):
        return bytes(memoryview(query))  # the buffer, as exact bytes
    if kind in TEMPLATES:  # exactly: a subclass's methods would run where psycopg reads it
        return query
    raise TypeError(
        f"a query must be a str, bytes, psycopg.sql.Composable or t-string, not {kind.__name__}"
    )


def screen_wait(conn: Any, st: ConnState, gen: Any) -> None:
    """Before psycopg runs *gen* on a tenant connection (``conn.wait()``, which every
    cursor, transaction, pipeline and COPY of psycopg goes through).

    psycopg's own commands (:data:`._internals.CONTROL_CODES`: COMMIT, SAVEPOINT, a
    pipeline's Sync, COPY data; known by their code objects) pass for the lease's holder;
    the setters of transaction characteristics too, and they mark the connection. SQL
    tenantguard classified passes when its holder sends it (``_tg_pass``, set by its
    cursors just before they call psycopg, consumed here), as does tenantguard's internal
    cursor. Any other SQL text (``psycopg.Cursor(conn)``, ``ClientCursor``, a tenantguard
    cursor driven through psycopg's base methods, a named cursor's FETCH/MOVE/CLOSE
    called that way) was neither classified nor bound: the connection is marked so that
    it is closed at checkin, never reaching another lease, and from anyone but the
    holder it is refused before anything is sent. The mark comes first: a lease starting
    concurrently either sees it or owns the connection before the ownership check, which
    then refuses.
    """
    holder = st.owner_of() == st.owner
    code = getattr(gen, "gi_code", None)
    st.lexer_ok = False  # something is sent: the next statement reads LEXER_PARAMS
    if code in CONTROL_CODES or code in SETTER_CODES:
        if not holder or code in SETTER_CODES:
            conn._tg_client_changed = True  # replaced before the next lease (mark first)
        if not holder and st.lease is not None:
            st.check_owner()  # a kept reference inside another tenant's lease: refused
        return
    if conn._tg_pass and (
        holder or not PASS_NEEDS_HOLDER
    ):  # only the holder's: another task or thread queued on
        conn._tg_pass = False  # the connection's lock must not take it
        return
    if not _internal(conn, gen):
        conn._tg_client_changed = UNSCREENED
        if not holder:
            st.check_owner()  # raises: the lease ended, or belongs to another thread/task


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


def note_attributes(conn: Any) -> None:
    """Record what the checkout compares (:func:`attributes_replaced`): psycopg's public
    instance attributes and the size of the instance's ``__dict__``."""
    conn._tg_public = (conn.pgconn, conn.lock)
    conn._tg_dict_len = 0
    conn._tg_dict_len = len(conn.__dict__)


def attributes_replaced(conn: Any) -> bool:
    """A public attribute of the pooled connection object was replaced or added since
    :func:`note_attributes` (``conn.lock = Planted(...)``, ``conn.execute = planted``):
    the planted object would run inside every later lease of the same Python object (the
    ninth review read another tenant's rows, and its signed token, that way). psycopg's
    properties (``row_factory``, ``autocommit``...) keep their own guarded setters.
    Private names that appear later (psycopg_pool's, tenantguard's own) are recorded.
    """
    pgconn, lock = conn._tg_public
    if conn.pgconn is not pgconn or conn.lock is not lock:
        return True
    if any(
        type(name) is not str or (name[0] != "_" and name not in _PUBLIC_INSTANCE)
        for name in conn.__dict__
    ):
        return True
    conn._tg_dict_len = len(conn.__dict__)
    return False


#: psycopg's public instance attributes (the factories are tenantguard properties).
_PUBLIC_INSTANCE = frozenset({"pgconn", "lock"})


class TrackedHandlers:
    """Notice and notify handlers on a pool connection (the methods are sync on both
    psycopg connection classes): the checkin guard replaces a connection that still has
    one, which would otherwise receive the next tenant's notices. From a reference kept
    past its lease they raise :class:`LeaseNotHeld` (they would hook another lease).

    ``_tg_notice`` and ``_tg_notify`` are psycopg's own handler lists where
    :func:`._internals.handler_lists` finds them (so a handler added through psycopg's
    base methods counts too), else lists kept here; the pool sets them up
    (:func:`track_handlers`).
    """

    _tg_notice: Any = ()
    _tg_notify: Any = ()
    _tg_own_lists = False  # the lists are ours, not psycopg's: keep them here

    def add_notice_handler(self, callback: Any) -> None:
        leased(self)
        super().add_notice_handler(callback)  # type: ignore[misc]
        if self._tg_own_lists:
            self._tg_notice.append(callback)

    def remove_notice_handler(self, callback: Any) -> None:
        leased(self)
        super().remove_notice_handler(callback)  # type: ignore[misc]
        if self._tg_own_lists and callback in self._tg_notice:
            self._tg_notice.remove(callback)

    def add_notify_handler(self, callback: Any) -> None:
        leased(self)
        super().add_notify_handler(callback)  # type: ignore[misc]
        if self._tg_own_lists:
            self._tg_notify.append(callback)

    def remove_notify_handler(self, callback: Any) -> None:
        leased(self)
        super().remove_notify_handler(callback)  # type: ignore[misc]
        if self._tg_own_lists and callback in self._tg_notify:
            self._tg_notify.remove(callback)


def track_handlers(conn: Any) -> None:
    """Point ``_tg_notice``/``_tg_notify`` at the lists the guard checks (see above)."""
    lists = handler_lists(conn)
    if lists is None:
        conn._tg_own_lists = True
        lists = [], []
    conn._tg_notice, conn._tg_notify = lists
