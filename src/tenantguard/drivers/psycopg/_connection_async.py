"""psycopg connection and cursor classes that bind the tenant per transaction (asyncio).

This is the source of the sync classes too: ``tools/async_to_sync.py`` generates
:mod:`._connection` from it, and CI (``make lint``) fails when the two disagree. Edit this
file, then run the tool. What both share is in :mod:`._connection_base`.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncPipeline, AsyncTransaction, Notify
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

__all__ = ["AsyncTenantConnection", "AsyncTenantCursor", "AsyncTenantServerCursor"]

# psycopg's own wait(), without tenantguard's screening: for the fast path, whose one
# statement is classified and bound by construction (bound_execute_gen).
_WAIT = psycopg.AsyncConnection.wait

_SERVER_CURSOR_ONLY = (
    "{what} is not available on a named (server-side) cursor of a tenant connection; "
    "nothing was sent: use conn.cursor() (an unnamed cursor) for it"
)

if TYPE_CHECKING:
    from psycopg.copy import AsyncCopy


class AsyncTenantCursor(psycopg.AsyncCursor[Row]):
    """A cursor whose statements always run bound to the leased tenant."""

    # No instance __dict__ (as psycopg's cursors): a method planted on the instance
    # (``cur.fetchall = planted``) would run in the next lease that reuses it (the eleventh
    # review). Only tenantguard's own slot.
    __slots__ = ("_tg_exposed", "_tg_foreign")
    _conn: AsyncTenantConnection[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tg_exposed = False  # ``connection`` read since the statement started (_reuse)
        self._tg_foreign = False  # a parameter of a class outside PLAIN_VALUES (_reuse)

    @property
    def connection(self) -> AsyncTenantConnection[Any]:
        self._tg_exposed = True
        return self._conn

    async def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> AsyncTenantCursor[Row]:
        conn = self._conn
        st = conn._tg_state
        if st is None:
            await untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            return self
        pg = conn.pgconn
        if (  # the fast path: one autocommit statement, idle, no pipeline
            conn._tg_fast_path
            and conn._pipeline is None
            and conn._autocommit
            and pg.transaction_status == IDLE
        ):
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
                    async with conn.lock:
                        await _WAIT(
                            conn,
                            bound_execute_gen(
                                self, st, binding, encoded, query, params, prepare, binary
                            ),
                        )
                except BindStatementMissing:  # the server forgot the binding: once more
                    async with conn.lock:
                        await _WAIT(
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
                await untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            elif pipelined:
                await conn._raw_cursor().execute(*bind, prepare=False)
                conn._tg_pass = True
                await untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            else:
                async with conn._own_pipeline():
                    await conn._raw_cursor().execute(*bind, prepare=False)
                    conn._tg_pass = True
                    await untyped(super()).execute(query, params, prepare=prepare, binary=binary)
        finally:
            conn._tg_pass = False
        st.after_statement(conn.pgconn.transaction_status)
        return self

    async def executemany(
        self, query: Query, params_seq: Iterable[Params], *, returning: bool = False
    ) -> None:
        conn = self._conn
        st = conn._tg_state
        if st is None:
            return await super().executemany(query, params_seq, returning=returning)
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
                await super().executemany(query, params_seq, returning=returning)
            elif pipelined:
                await conn._raw_cursor().execute(*bind, prepare=False)
                conn._tg_pass = True
                await super().executemany(query, params_seq, returning=returning)
            else:
                async with conn.pipeline():
                    await conn._raw_cursor().execute(*bind, prepare=False)
                    conn._tg_pass = True
                    await super().executemany(query, params_seq, returning=returning)
        except BaseException:
            conn._tg_client_changed = PIPELINE_ABORTED  # (psycopg pipelines it: see pipeline())
            raise
        finally:
            conn._tg_pass = False
        st.after_statement(conn.pgconn.transaction_status)
        return None

    @asynccontextmanager
    async def copy(
        self, statement: Query, params: Params | None = None, *, writer: Any = None
    ) -> AsyncIterator[AsyncCopy]:
        conn = self._conn
        statement = rendered(statement, self)  # classified as sent
        await conn._out_of_band("COPY", statement, params)
        try:
            async with super().copy(statement, params, writer=writer) as cp:
                conn._tg_pass = False
                yield cp
        finally:
            conn._tg_pass = False

    async def stream(
        self, query: Query, params: Params | None = None, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Row]:
        conn = self._conn
        query = rendered(query, self)  # classified as sent
        await conn._out_of_band("stream()", query, params)
        try:
            async for row in super().stream(query, params, *args, **kwargs):  # noqa: RUF100, UP028 (the sync twin)
                yield row
        finally:
            conn._tg_pass = False


class AsyncTenantServerCursor(psycopg.AsyncServerCursor[Row]):
    """Named (server-side) cursor: declared inside a bound transaction."""

    _conn: AsyncTenantConnection[Any]

    async def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        binary: bool | None = None,
        **kwargs: Any,
    ) -> AsyncTenantServerCursor[Row]:
        conn = self._conn
        query = rendered(query, self)  # classified as sent
        await conn._out_of_band("a server-side cursor", query, params)
        try:
            if self.withhold and conn._tg_state is not None:
                conn._tg_state.screen(frozenset({"hold_cursor"}), conn.pgconn)
            await super().execute(query, params, binary=binary, **kwargs)
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

    async def fetchone(self) -> Row | None:
        held(self._conn)
        self._conn._tg_pass = True
        try:
            return await super().fetchone()
        finally:
            self._conn._tg_pass = False

    async def fetchmany(self, size: int = 0) -> list[Row]:
        held(self._conn)
        exact(size, int, "size")  # (arraysize holds only ints: int_attribute)
        self._conn._tg_pass = True
        try:
            return await super().fetchmany(size)
        finally:
            self._conn._tg_pass = False

    async def fetchall(self) -> list[Row]:
        held(self._conn)
        self._conn._tg_pass = True
        try:
            return await super().fetchall()
        finally:
            self._conn._tg_pass = False

    async def __anext__(self) -> Row:
        held(self._conn)
        self._conn._tg_pass = True
        try:
            return await super().__anext__()
        finally:
            self._conn._tg_pass = False

    async def scroll(self, value: int, mode: str = "relative") -> None:
        held(self._conn)
        exact(value, int, "value")
        self._conn._tg_pass = True
        try:
            await super().scroll(value, mode)
        finally:
            self._conn._tg_pass = False

    async def close(self) -> None:
        held(self._conn)
        self._conn._tg_pass = True
        try:
            await super().close()
        finally:
            self._conn._tg_pass = False


class AsyncTenantConnection(TrackedHandlers, psycopg.AsyncConnection[Row]):
    """A psycopg connection that binds every transaction to the current tenant."""

    _tg_state: ConnState | None = None
    _tg_fast_path: bool = FAST_PATH
    _tg_binding_prepared: bool = False  # the binding is prepared on the server
    _tg_adapters_refs: int = -1  # see _reuse.adopt
    _tg_public: tuple[Any, Any] = (None, None)  # see note_attributes
    _tg_dict_len: int = -1
    _tg_adapters: tuple[Any, ...] | None = None  # see _internals.adapters_tables
    _tg_pass: bool = False  # the next send was classified by tenantguard (see screen_wait)
    _tg_internal_cursor: psycopg.AsyncCursor[Any] | None = None
    _tg_reused_cursor: AsyncTenantCursor[Any] | None = (
        None  # the last execute()'s cursor (see _reuse)
    )

    # Set through a lease, these outlive it (see _pool.client_changed): marked when set.
    _tg_client_changed: bool | str = False  # True, or why (UNSCREENED, PIPELINE_ABORTED)
    prepare_threshold = marking(psycopg.AsyncConnection.prepare_threshold)
    prepared_max = marking(psycopg.AsyncConnection.prepared_max)
    row_factory = guarded_attribute("row_factory")
    cursor_factory = guarded_attribute("cursor_factory")
    server_cursor_factory = guarded_attribute("server_cursor_factory")

    async def set_autocommit(self, value: bool) -> None:
        leased(self)
        self._tg_client_changed = True
        await super().set_autocommit(value)

    async def set_isolation_level(self, value: Any) -> None:
        leased(self)
        self._tg_client_changed = True
        await super().set_isolation_level(value)

    async def set_read_only(self, value: bool | None) -> None:
        leased(self)
        self._tg_client_changed = True
        await super().set_read_only(value)

    async def set_deferrable(self, value: bool | None) -> None:
        leased(self)
        self._tg_client_changed = True
        await super().set_deferrable(value)

    async def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        """psycopg's, after :func:`screen_wait`: nothing reaches the server unclassified
        from anyone but the lease's holder, and what the holder sends unclassified ends
        the connection's life at checkin."""
        st = self._tg_state
        if st is not None:
            screen_wait(self, st, gen)
        return await super().wait(gen, *args, **kwargs)

    def _raw_cursor(self) -> psycopg.AsyncCursor[Any]:
        """The plain psycopg cursor of the binding and the checkin guard.

        Plain: internal statements must not recurse into binding. Made by the pool's
        ``configure`` hook, before any lease: a cursor copies the connection's adapters
        when it is made, so dumpers or loaders a lease registers on the connection never
        encode the binding nor read the guard's snapshot.
        """
        if self._tg_internal_cursor is None or self._tg_internal_cursor.closed:
            self._tg_internal_cursor = psycopg.AsyncCursor(self)
        return self._tg_internal_cursor

    # What a reference kept past its lease must not do to the lease that holds the
    # connection now (another thread's or task's): the same check as commit().
    def cancel(self) -> None:
        leased(self)  # nothing cancels an idle pooled connection: it would hit the next lease
        super().cancel()

    async def cancel_safe(self, *, timeout: float = 30.0) -> None:
        leased(self)
        await super().cancel_safe(timeout=timeout)

    async def close(self) -> None:
        held(self)
        await super().close()

    @asynccontextmanager
    async def _own_pipeline(self) -> AsyncIterator[AsyncPipeline]:
        """psycopg's pipeline, for the binding and one statement (or BEGIN): a statement
        that fails there leaves nothing queued behind it, so the connection stays."""
        async with super().pipeline() as p:
            yield p

    @asynccontextmanager
    async def pipeline(self) -> AsyncIterator[AsyncPipeline]:
        leased(self)  # entered between leases, it would swallow the next lease's statements
        try:
            async with super().pipeline() as p:
                yield p
        except BaseException:
            # An aborted pipeline leaves psycopg counting Parses the server skipped as
            # prepared (the next lease's statements would fail): a fresh connection.
            self._tg_client_changed = PIPELINE_ABORTED
            raise

    async def notifies(
        self, *, timeout: float | None = None, stop_after: int | None = None
    ) -> AsyncGenerator[Notify, None]:
        leased(self)  # it holds the connection's lock while it waits
        gen = super().notifies(timeout=timeout, stop_after=stop_after)
        async for notify in gen:  # noqa: RUF100, UP028 (the sync twin)
            yield notify

    # Two-phase commit: PREPARE TRANSACTION and COMMIT/ROLLBACK PREPARED are refused as SQL;
    # psycopg's tpc_* send them itself.
    async def tpc_begin(self, xid: Any) -> None:
        refuse_tpc(self)
        await super().tpc_begin(xid)

    async def tpc_prepare(self) -> None:
        refuse_tpc(self)
        await super().tpc_prepare()

    async def tpc_commit(self, xid: Any = None) -> None:
        refuse_tpc(self)
        await super().tpc_commit(xid)

    async def tpc_rollback(self, xid: Any = None) -> None:
        refuse_tpc(self)
        await super().tpc_rollback(xid)

    async def tpc_recover(self) -> list[Any]:
        refuse_tpc(self)
        return await super().tpc_recover()

    async def commit(self) -> None:
        held(self)
        await super().commit()

    async def rollback(self) -> None:
        held(self)
        await super().rollback()

    async def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool = False,
    ) -> AsyncTenantCursor[Row]:
        """As psycopg's, but reusing the last statement's cursor when that is unobservable."""
        cur: Any
        st = self._tg_state
        if st is not None and st.owner_of() != st.owner:
            st.check_owner()  # before the kept cursor is touched: it may be another lease's
        if st is None or not REUSE or isinstance(query, _TEMPLATES):
            cur = await untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            return cur  # type: ignore[no-any-return]
        cur = _reuse.reusable(self, binary)
        if cur is not None:
            return await cur.execute(query, params, prepare=prepare)  # type: ignore[no-any-return]
        cur = self.cursor(binary=binary)
        await cur.execute(query, params, prepare=prepare)
        _reuse.adopt(self, cur)
        return cur  # type: ignore[no-any-return]

    async def _out_of_band(self, what: str, query: Query, params: Params | None) -> None:
        """Bind, then classify *query*: psycopg's next send is tenantguard's (screen_wait)."""
        await self._bind_out_of_band(what)
        st = self._tg_state
        if st is not None:
            st.note(query, self.pgconn, params is not None)
            self._tg_pass = True

    async def _bind_out_of_band(self, what: str) -> None:
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
        await self._raw_cursor().execute(*bind, prepare=False)
        st.after_statement(self.pgconn.transaction_status)

    @asynccontextmanager
    async def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> AsyncIterator[AsyncTransaction]:
        leased(self)  # a savepoint from a kept reference would land in another lease
        st = self._tg_state
        if st is None or self.pgconn.transaction_status != IDLE or in_pipeline(self):
            # Not ours, or nested: a savepoint inside an already-bound transaction.
            async with super().transaction(savepoint_name, force_rollback) as tx:
                yield tx
            return
        bind = st.bind_needed(IDLE, False, "a transaction")
        assert bind is not None
        tx = AsyncTransaction(self, savepoint_name, force_rollback)
        entered = False
        try:
            async with self._own_pipeline():  # BEGIN and the binding: one round trip
                await tx.__aenter__()
                entered = True
                await self._raw_cursor().execute(*bind, prepare=False)
        except BaseException as exc:
            if entered:
                await tx.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        st.bound = True
        try:
            yield tx
        except BaseException as exc:
            if not await tx.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await tx.__aexit__(None, None, None)
        finally:
            st.after_statement(self.pgconn.transaction_status)
