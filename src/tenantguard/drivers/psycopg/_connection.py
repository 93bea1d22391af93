# WARNING: this file is generated from _connection_async.py by tools/async_to_sync.py.
# Edit the async source and run the tool; CI checks that they agree.
"""psycopg connection and cursor classes that bind the tenant per transaction.

Generated from :mod:`._connection_async` by ``tools/async_to_sync.py``: edit that
file, then run the tool (``make lint`` checks that they agree).
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import Notify, Pipeline, Transaction
from psycopg.abc import Params, Query
from psycopg.rows import Row

from tenantguard.core.session import ConnState
from tenantguard.drivers.psycopg import _reuse
from tenantguard.drivers.psycopg._connection_base import (
    IDLE,
    KEPT_AS_IS,
    NEEDS_TX,
    NO_PARAMS,
    PIPELINE_ABORTED,
    PLAIN_VALUES,
    REUSE,
    TrackedHandlers,
    exact,
    guarded_attribute,
    held,
    in_pipeline,
    int_attribute,
    leased,
    marking,
    refuse_tpc,
    rendered,
    screen_wait,
    screened,
    untyped,
)
from tenantguard.drivers.psycopg._fastpath import AVAILABLE as FAST_PATH
from tenantguard.drivers.psycopg._fastpath import (
    BindStatementMissing,
    bound_execute_gen,
    encode_values,
)
from tenantguard.drivers.psycopg._internals import NO_TRACEBACK
from tenantguard.drivers.psycopg._internals import TEMPLATES as _TEMPLATES
from tenantguard.errors import UnsupportedOperation

__all__ = ["TenantConnection", "TenantCursor", "TenantServerCursor"]
# psycopg's own wait(), without tenantguard's screening: for the fast path, whose one
# statement is classified and bound by construction (bound_execute_gen).
_WAIT = psycopg.Connection.wait
_SERVER_CURSOR_ONLY = "{what} is not available on a named (server-side) cursor of a tenant connection; nothing was sent: use conn.cursor() (an unnamed cursor) for it"
if TYPE_CHECKING:
    from psycopg.copy import Copy


class TenantCursor(psycopg.Cursor[Row]):
    """A cursor whose statements always run bound to the leased tenant."""

    # No instance __dict__ (as psycopg's cursors): a method planted on the instance
    # (``cur.fetchall = planted``) would run in the next lease that reuses it (the eleventh
    # review). Only tenantguard's own slot.
    __slots__ = ("_tg_exposed", "_tg_foreign")
    _conn: TenantConnection[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tg_exposed = False  # ``connection`` read since the statement started (_reuse)
        self._tg_foreign = False  # a parameter of a class outside PLAIN_VALUES (_reuse)

    @property
    def connection(self) -> TenantConnection[Any]:
        self._tg_exposed = True
        return self._conn

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> TenantCursor[Row]:
        conn = self._conn
        st = conn._tg_state
        if st is None:
            untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            return self
        pg = conn.pgconn
        if (
            conn._tg_fast_path
            and conn._pipeline is None
            and conn._autocommit
            and (pg.transaction_status == IDLE)
        ):  # the fast path: one autocommit statement, idle, no pipeline
            if type(query) not in KEPT_AS_IS:
                # psycopg keeps the query as the cursor's _last_query and reads it at the
                # start of the next statement (the next lease's, on a reused cursor): the
                # caller's own object, a str subclass say, would run there (twelfth review).
                query = rendered(query, self)
            binding, encoded = st.autocommit_bind()  # fail-closed: no tenant, not the holder
            if encoded is None:
                encoded = encode_values(binding[1], self._encoding)
            try:
                try:
                    with conn.lock:
                        _WAIT(
                            conn,
                            bound_execute_gen(
                                self, st, binding, encoded, query, params, prepare, binary
                            ),
                        )
                except BindStatementMissing:  # the server forgot the binding: once more
                    with conn.lock:
                        _WAIT(
                            conn,
                            bound_execute_gen(
                                self, st, binding, encoded, query, params, prepare, binary
                            ),
                        )
            except NO_TRACEBACK as ex:  # as psycopg does
                raise ex.with_traceback(None) from None
            st.bound = pg.transaction_status != IDLE
            if params:  # (plain_params, inlined: the hot path)
                for value in params.values() if type(params) is dict else params:
                    kind = type(value)
                    if type(kind) is not type or kind not in PLAIN_VALUES:
                        # Its class is a key of the Transformer's dumper cache, which the
                        # next lease's lookups compare with (a metaclass's __eq__ would run
                        # there: the thirteenth review): that lease gets a new Transformer.
                        self._tg_foreign = True
                        break
            return self
        pipelined = in_pipeline(conn)
        bind = st.bind_needed(conn.pgconn.transaction_status, pipelined)
        query = rendered(query, self)  # classified as sent
        st.note(query, conn.pgconn, params is not None)
        try:
            if bind is None:
                conn._tg_pass = True  # classified above: see screen_wait
                untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            elif pipelined:
                conn._raw_cursor().execute(*bind, prepare=False)
                conn._tg_pass = True
                untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            else:
                with conn._own_pipeline():
                    conn._raw_cursor().execute(*bind, prepare=False)
                    conn._tg_pass = True
                    untyped(super()).execute(query, params, prepare=prepare, binary=binary)
        finally:
            conn._tg_pass = False
        st.after_statement(conn.pgconn.transaction_status)
        return self

    def executemany(
        self, query: Query, params_seq: Iterable[Params], *, returning: bool = False
    ) -> None:
        conn = self._conn
        st = conn._tg_state
        if st is None:
            return super().executemany(query, params_seq, returning=returning)
        pipelined = in_pipeline(conn)
        bind = st.bind_needed(conn.pgconn.transaction_status, pipelined)
        query = rendered(query, self)  # classified as sent
        params_seq = screened(st, query, conn.pgconn, params_seq)
        first = next(params_seq, NO_PARAMS)  # screened: refused before anything is sent
        if first is NO_PARAMS:
            return None
        params_seq = itertools.chain((first,), params_seq)
        try:
            if bind is None:
                conn._tg_pass = True  # screened: see screen_wait
                super().executemany(query, params_seq, returning=returning)
            elif pipelined:
                conn._raw_cursor().execute(*bind, prepare=False)
                conn._tg_pass = True
                super().executemany(query, params_seq, returning=returning)
            else:
                with conn.pipeline():
                    conn._raw_cursor().execute(*bind, prepare=False)
                    conn._tg_pass = True
                    super().executemany(query, params_seq, returning=returning)
        except BaseException:
            conn._tg_client_changed = PIPELINE_ABORTED  # (psycopg pipelines it: see pipeline())
            raise
        finally:
            conn._tg_pass = False
        st.after_statement(conn.pgconn.transaction_status)
        return None

    @contextmanager
    def copy(
        self, statement: Query, params: Params | None = None, *, writer: Any = None
    ) -> Iterator[Copy]:
        conn = self._conn
        statement = rendered(statement, self)  # classified as sent
        conn._out_of_band("COPY", statement, params)
        try:
            with super().copy(statement, params, writer=writer) as cp:
                conn._tg_pass = False
                yield cp
        finally:
            conn._tg_pass = False

    def stream(
        self, query: Query, params: Params | None = None, *args: Any, **kwargs: Any
    ) -> Iterator[Row]:
        conn = self._conn
        query = rendered(query, self)  # classified as sent
        conn._out_of_band("stream()", query, params)
        try:
            for row in super().stream(query, params, *args, **kwargs):  # noqa: RUF100, UP028 (the sync twin)
                yield row
        finally:
            conn._tg_pass = False


class TenantServerCursor(psycopg.ServerCursor[Row]):
    """Named (server-side) cursor: declared inside a bound transaction."""

    _conn: TenantConnection[Any]

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        binary: bool | None = None,
        **kwargs: Any,
    ) -> TenantServerCursor[Row]:
        conn = self._conn
        query = rendered(query, self)  # classified as sent
        conn._out_of_band("a server-side cursor", query, params)
        try:
            if self.withhold and conn._tg_state is not None:
                conn._tg_state.screen(frozenset({"hold_cursor"}), conn.pgconn)
            super().execute(query, params, binary=binary, **kwargs)
        finally:
            conn._tg_pass = False
        return self

    # psycopg's server cursor inherits these from its plain cursor: they would send their
    # text unclassified and unbound (the sixth review). Use conn.cursor() for them.

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedOperation(_SERVER_CURSOR_ONLY.format(what="copy()"))

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedOperation(_SERVER_CURSOR_ONLY.format(what="stream()"))

    # FETCH, MOVE and CLOSE name the cursor and carry a count: psycopg writes them as SQL
    # text (sql.Literal), sent with the simple protocol, so the count must be an int and
    # the name a str (a Decimal subclass's __str__ would be SQL). Validated, they are
    # screened as tenantguard's own (screen_wait); psycopg's base methods called on this
    # cursor are not, and close the connection at checkin.
    arraysize = int_attribute("arraysize")
    itersize = int_attribute("itersize")

    def __init__(
        self,
        connection: Any,
        name: str,
        *args: Any,
        scrollable: bool | None = None,
        withhold: bool = False,
        **kwargs: Any,
    ) -> None:
        # Exact types: a value whose truth changes between two reads would be screened as
        # one thing (no WITH HOLD) and declared as another (the tenth review).
        if (
            type(name) is not str
            or type(withhold) is not bool
            or (scrollable is not None and type(scrollable) is not bool)
        ):
            self._closed = True  # (psycopg's __del__ reads it)
            exact(name, str, "name")
            exact(withhold, bool, "withhold")
            exact(scrollable, bool, "scrollable")
        super().__init__(
            connection, name, *args, scrollable=scrollable, withhold=withhold, **kwargs
        )

    def fetchone(self) -> Row | None:
        held(self._conn)
        self._conn._tg_pass = True
        try:
            return super().fetchone()
        finally:
            self._conn._tg_pass = False

    def fetchmany(self, size: int = 0) -> list[Row]:
        held(self._conn)
        exact(size, int, "size")  # (arraysize holds only ints: int_attribute)
        self._conn._tg_pass = True
        try:
            return super().fetchmany(size)
        finally:
            self._conn._tg_pass = False

    def fetchall(self) -> list[Row]:
        held(self._conn)
        self._conn._tg_pass = True
        try:
            return super().fetchall()
        finally:
            self._conn._tg_pass = False

    def __next__(self) -> Row:
        held(self._conn)
        self._conn._tg_pass = True
        try:
            return super().__next__()
        finally:
            self._conn._tg_pass = False

    def scroll(self, value: int, mode: str = "relative") -> None:
        held(self._conn)
        exact(value, int, "value")
        self._conn._tg_pass = True
        try:
            super().scroll(value, mode)
        finally:
            self._conn._tg_pass = False

    def close(self) -> None:
        held(self._conn)
        self._conn._tg_pass = True
        try:
            super().close()
        finally:
            self._conn._tg_pass = False


class TenantConnection(TrackedHandlers, psycopg.Connection[Row]):
    """A psycopg connection that binds every transaction to the current tenant."""

    _tg_state: ConnState | None = None
    _tg_fast_path: bool = FAST_PATH
    _tg_binding_prepared: bool = False  # the binding is prepared on the server
    _tg_adapters_refs: int = -1  # see _reuse.adopt
    _tg_public: tuple[Any, Any] = (None, None)  # see note_attributes
    _tg_dict_len: int = -1
    _tg_adapters: tuple[Any, ...] | None = None  # see _internals.adapters_tables
    _tg_pass: bool = False  # the next send was classified by tenantguard (see screen_wait)
    _tg_internal_cursor: psycopg.Cursor[Any] | None = (
        None  # the last execute()'s cursor (see _reuse)
    )
    _tg_reused_cursor: TenantCursor[Any] | None = None
    # Set through a lease, these outlive it (see _pool.client_changed): marked when set.
    _tg_client_changed: bool | str = False  # True, or why (UNSCREENED, PIPELINE_ABORTED)
    prepare_threshold = marking(psycopg.Connection.prepare_threshold)
    prepared_max = marking(psycopg.Connection.prepared_max)
    row_factory = guarded_attribute("row_factory")
    cursor_factory = guarded_attribute("cursor_factory")
    server_cursor_factory = guarded_attribute("server_cursor_factory")

    def set_autocommit(self, value: bool) -> None:
        leased(self)
        self._tg_client_changed = True
        super().set_autocommit(value)

    def set_isolation_level(self, value: Any) -> None:
        leased(self)
        self._tg_client_changed = True
        super().set_isolation_level(value)

    def set_read_only(self, value: bool | None) -> None:
        leased(self)
        self._tg_client_changed = True
        super().set_read_only(value)

    def set_deferrable(self, value: bool | None) -> None:
        leased(self)
        self._tg_client_changed = True
        super().set_deferrable(value)

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        """psycopg's, after :func:`screen_wait`: nothing reaches the server unclassified
        from anyone but the lease's holder, and what the holder sends unclassified ends
        the connection's life at checkin."""
        st = self._tg_state
        if st is not None:
            screen_wait(self, st, gen)
        return super().wait(gen, *args, **kwargs)

    def _raw_cursor(self) -> psycopg.Cursor[Any]:
        """The plain psycopg cursor of the binding and the checkin guard.

        Plain: internal statements must not recurse into binding. Made by the pool's
        ``configure`` hook, before any lease: a cursor copies the connection's adapters
        when it is made, so dumpers or loaders a lease registers on the connection never
        encode the binding nor read the guard's snapshot.
        """
        if self._tg_internal_cursor is None or self._tg_internal_cursor.closed:
            self._tg_internal_cursor = psycopg.Cursor(self)
        return self._tg_internal_cursor

    # What a reference kept past its lease must not do to the lease that holds the
    # connection now (another thread's or task's): the same check as commit().

    def cancel(self) -> None:
        leased(self)  # nothing cancels an idle pooled connection: it would hit the next lease
        super().cancel()

    def cancel_safe(self, *, timeout: float = 30.0) -> None:
        leased(self)
        super().cancel_safe(timeout=timeout)

    def close(self) -> None:
        held(self)
        super().close()

    @contextmanager
    def _own_pipeline(self) -> Iterator[Pipeline]:
        """psycopg's pipeline, for the binding and one statement (or BEGIN): a statement
        that fails there leaves nothing queued behind it, so the connection stays."""
        with super().pipeline() as p:
            yield p

    @contextmanager
    def pipeline(self) -> Iterator[Pipeline]:
        leased(self)  # entered between leases, it would swallow the next lease's statements
        try:
            with super().pipeline() as p:
                yield p
        except BaseException:
            # An aborted pipeline leaves psycopg counting Parses the server skipped as
            # prepared (the next lease's statements would fail): a fresh connection.
            self._tg_client_changed = PIPELINE_ABORTED
            raise

    def notifies(
        self, *, timeout: float | None = None, stop_after: int | None = None
    ) -> Generator[Notify, None]:
        leased(self)  # it holds the connection's lock while it waits
        gen = super().notifies(timeout=timeout, stop_after=stop_after)
        for notify in gen:  # noqa: RUF100, UP028 (the sync twin)
            yield notify

    # Two-phase commit: PREPARE TRANSACTION and COMMIT/ROLLBACK PREPARED are refused as SQL;
    # psycopg's tpc_* send them itself.

    def tpc_begin(self, xid: Any) -> None:
        refuse_tpc(self)
        super().tpc_begin(xid)

    def tpc_prepare(self) -> None:
        refuse_tpc(self)
        super().tpc_prepare()

    def tpc_commit(self, xid: Any = None) -> None:
        refuse_tpc(self)
        super().tpc_commit(xid)

    def tpc_rollback(self, xid: Any = None) -> None:
        refuse_tpc(self)
        super().tpc_rollback(xid)

    def tpc_recover(self) -> list[Any]:
        refuse_tpc(self)
        return super().tpc_recover()

    def commit(self) -> None:
        held(self)
        super().commit()

    def rollback(self) -> None:
        held(self)
        super().rollback()

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool = False,
    ) -> TenantCursor[Row]:
        """As psycopg's, but reusing the last statement's cursor when that is unobservable."""
        cur: Any
        st = self._tg_state
        if st is not None and st.owner_of() != st.owner:
            st.check_owner()  # before the kept cursor is touched: it may be another lease's
        if st is None or not REUSE or isinstance(query, _TEMPLATES):
            cur = untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            return cur  # type: ignore[no-any-return]
        cur = _reuse.reusable(self, binary)
        if cur is not None:
            return cur.execute(query, params, prepare=prepare)  # type: ignore[no-any-return]
        cur = self.cursor(binary=binary)
        cur.execute(query, params, prepare=prepare)
        _reuse.adopt(self, cur)
        return cur  # type: ignore[no-any-return]

    def _out_of_band(self, what: str, query: Query, params: Params | None) -> None:
        """Bind, then classify *query*: psycopg's next send is tenantguard's (screen_wait)."""
        self._bind_out_of_band(what)
        st = self._tg_state
        if st is not None:
            st.note(query, self.pgconn, params is not None)
            self._tg_pass = True

    def _bind_out_of_band(self, what: str) -> None:
        """Bind before an operation that cannot be pipelined (COPY, streaming, DECLARE)."""
        st = self._tg_state
        if st is None:
            return
        status = self.pgconn.transaction_status
        bind = st.bind_needed(status, in_pipeline(self), what)
        if bind is None:
            return
        if status == IDLE and self.autocommit:
            raise UnsupportedOperation(NEEDS_TX.format(what=what))
        self._raw_cursor().execute(*bind, prepare=False)
        st.after_statement(self.pgconn.transaction_status)

    @contextmanager
    def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> Iterator[Transaction]:
        leased(self)  # a savepoint from a kept reference would land in another lease
        st = self._tg_state
        if st is None or self.pgconn.transaction_status != IDLE or in_pipeline(self):
            # Not ours, or nested: a savepoint inside an already-bound transaction.
            with super().transaction(savepoint_name, force_rollback) as tx:
                yield tx
            return
        bind = st.bind_needed(IDLE, False, "a transaction")
        assert bind is not None
        tx = Transaction(self, savepoint_name, force_rollback)
        entered = False
        try:
            with self._own_pipeline():  # BEGIN and the binding: one round trip
                tx.__enter__()
                entered = True
                self._raw_cursor().execute(*bind, prepare=False)
        except BaseException as exc:
            if entered:
                tx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        st.bound = True
        try:
            yield tx
        except BaseException as exc:
            if not tx.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            tx.__exit__(None, None, None)
        finally:
            st.after_statement(self.pgconn.transaction_status)
