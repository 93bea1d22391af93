"""psycopg connection and cursor classes that bind the tenant per transaction.

The binding rides in the same network round trip as the statement that opens the
transaction: both are queued in one pipeline and sent under a single Sync. With an
autocommit connection (the pool default) the two then form one implicit
transaction, so ``set_config(.., true)`` lasts exactly as long as the statement.
Inside ``with conn.transaction():`` the binding is queued with the ``BEGIN``;
savepoints nested below it are not rebound.

A connection with no tenantguard state (``_tg is None``) behaves like plain psycopg;
the pools set the state when they create the connection.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncTransaction, Transaction
from psycopg.abc import Params, Query
from psycopg.pq import PipelineStatus, TransactionStatus
from psycopg.rows import Row

from tenantguard.core.session import ConnState
from tenantguard.drivers.psycopg import _reuse
from tenantguard.drivers.psycopg._fastpath import AVAILABLE as FAST_PATH
from tenantguard.drivers.psycopg._fastpath import (
    BindStatementMissing,
    bound_execute_gen,
    encode_values,
)
from tenantguard.drivers.psycopg._internals import NO_TRACEBACK
from tenantguard.drivers.psycopg._internals import TEMPLATES as _TEMPLATES
from tenantguard.errors import UnsupportedOperation


def _untyped(obj: object) -> Any:
    """*obj* as ``Any``: psycopg's ``execute()`` is overloaded on Query vs Template, and
    the overrides here forward the caller's arguments to it unchanged."""
    return obj


if TYPE_CHECKING:
    from psycopg.copy import AsyncCopy, Copy

__all__ = ["AsyncTenantConnection", "AsyncTenantCursor", "TenantConnection", "TenantCursor"]

IDLE = TransactionStatus.IDLE
PIPELINE_OFF = PipelineStatus.OFF
_REUSE = _reuse.ENABLED  # (only where _internals' capability check passed)

_NEEDS_TX = (
    "{what} cannot carry the tenant binding in autocommit mode outside a transaction; "
    "wrap it in `with conn.transaction():`"
)


def _in_pipeline(conn: Any) -> bool:
    """In a ``conn.pipeline()`` block (libpq's pipeline status: public API)."""
    return bool(conn.pgconn.pipeline_status != PIPELINE_OFF)


def _held(conn: Any) -> None:
    """Raise :class:`LeaseNotHeld` when another thread or task holds *conn*'s lease.

    For operations that send something without binding (``commit()``, a server cursor's
    ``FETCH``): from a reference kept past a lease they would land in the transaction of
    the tenant that holds the connection now. Between leases (in the pool) they are let
    through: psycopg_pool itself rolls back and closes connections there.
    """
    st = conn._tg
    if st is not None and st.lease is not None and st.owner_of() != st.owner:
        st.check_owner()


def _marking(prop: Any) -> Any:
    """*prop* (a psycopg connection property) with a setter that marks the connection:
    what a lease changes on the Python object, the next lease would inherit."""

    def fset(self: Any, value: Any) -> None:
        self._tg_client_dirty = True
        prop.fset(self, value)

    return property(prop.fget, fset, doc=prop.__doc__)


_NO_PARAMS: Any = object()


def _screened(
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


def _fast_path_open(conn: Any) -> bool:
    """The hot path applies: an autocommit connection, idle, not in a user pipeline."""
    return bool(
        conn._tg_fast
        and conn._pipeline is None
        and conn._autocommit
        and conn.pgconn.transaction_status == IDLE
    )


class TenantCursor(psycopg.Cursor[Row]):
    """A cursor whose statements always run bound to the leased tenant."""

    _conn: TenantConnection[Any]

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> TenantCursor[Row]:
        conn = self._conn
        st = conn._tg
        if st is None:
            _untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            return self
        if _fast_path_open(conn):  # one autocommit statement (fail-closed in autocommit_bind)
            binding, encoded = st.autocommit_bind()
            self._fast_execute(st, binding, encoded, query, params, prepare, binary)
            st.bound = conn.pgconn.transaction_status != IDLE
            return self
        in_pipeline = _in_pipeline(conn)
        bind = st.bind_needed(conn.pgconn.transaction_status, in_pipeline)
        st.note(query, conn.pgconn, params is not None)
        if bind is None:
            _untyped(super()).execute(query, params, prepare=prepare, binary=binary)
        elif in_pipeline:
            conn._raw_cursor().execute(*bind)
            _untyped(super()).execute(query, params, prepare=prepare, binary=binary)
        else:
            with conn.pipeline():
                conn._raw_cursor().execute(*bind)
                _untyped(super()).execute(query, params, prepare=prepare, binary=binary)
        st.after_statement(conn.pgconn.transaction_status)
        return self

    def _fast_execute(
        self,
        st: ConnState,
        bind: tuple[str, tuple[str, ...]],
        encoded: list[bytes] | None,
        query: Query,
        params: Params | None,
        prepare: bool | None,
        binary: bool | None,
    ) -> None:
        conn = self._conn
        if encoded is None:
            encoded = encode_values(bind[1], self._encoding)
        try:
            try:
                with conn.lock:
                    conn.wait(
                        bound_execute_gen(
                            self, st, bind, encoded, query, params, prepare=prepare, binary=binary
                        )
                    )
            except BindStatementMissing:  # the server forgot the binding: once more
                with conn.lock:
                    conn.wait(
                        bound_execute_gen(
                            self, st, bind, encoded, query, params, prepare=prepare, binary=binary
                        )
                    )
        except NO_TRACEBACK as ex:  # as psycopg does
            raise ex.with_traceback(None) from None

    def executemany(
        self, query: Query, params_seq: Iterable[Params], *, returning: bool = False
    ) -> None:
        conn = self._conn
        st = conn._tg
        if st is None:
            return super().executemany(query, params_seq, returning=returning)
        in_pipeline = _in_pipeline(conn)
        bind = st.bind_needed(conn.pgconn.transaction_status, in_pipeline)
        params_seq = _screened(st, query, conn.pgconn, params_seq)
        first = next(params_seq, _NO_PARAMS)  # screened: refused before anything is sent
        if first is _NO_PARAMS:
            return None
        params_seq = itertools.chain((first,), params_seq)
        if bind is None:
            super().executemany(query, params_seq, returning=returning)
        elif in_pipeline:
            conn._raw_cursor().execute(*bind)
            super().executemany(query, params_seq, returning=returning)
        else:
            with conn.pipeline():
                conn._raw_cursor().execute(*bind)
                super().executemany(query, params_seq, returning=returning)
        st.after_statement(conn.pgconn.transaction_status)
        return None

    @contextmanager
    def copy(
        self, statement: Query, params: Params | None = None, *, writer: Any = None
    ) -> Iterator[Copy]:
        self._conn._bind_out_of_band("COPY")
        if self._conn._tg is not None:
            self._conn._tg.note(statement, self._conn.pgconn, params is not None)
        with super().copy(statement, params, writer=writer) as cp:
            yield cp

    def stream(
        self, query: Query, params: Params | None = None, *args: Any, **kwargs: Any
    ) -> Iterator[Row]:
        self._conn._bind_out_of_band("stream()")
        if self._conn._tg is not None:
            self._conn._tg.note(query, self._conn.pgconn, params is not None)
        return super().stream(query, params, *args, **kwargs)


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
        self._conn._bind_out_of_band("a server-side cursor")
        if self._conn._tg is not None:
            self._conn._tg.note(query, self._conn.pgconn, params is not None)
            if self.withhold:
                self._conn._tg.screen(frozenset({"hold_cursor"}), self._conn.pgconn)
        super().execute(query, params, binary=binary, **kwargs)
        return self

    def fetchone(self) -> Row | None:
        _held(self._conn)
        return super().fetchone()

    def fetchmany(self, size: int = 0) -> list[Row]:
        _held(self._conn)
        return super().fetchmany(size)

    def fetchall(self) -> list[Row]:
        _held(self._conn)
        return super().fetchall()

    def __next__(self) -> Row:
        _held(self._conn)
        return super().__next__()

    def scroll(self, value: int, mode: str = "relative") -> None:
        _held(self._conn)
        super().scroll(value, mode)

    def close(self) -> None:
        _held(self._conn)
        super().close()


class _TrackedHandlers:
    """Notice and notify handlers added through a lease, kept count of (the methods are sync
    on both psycopg connection classes): the checkin guard replaces a connection that still
    has one, which would otherwise receive the next tenant's notices."""

    _tg_handlers: tuple[Any, ...] = ()

    def add_notice_handler(self, callback: Any) -> None:
        super().add_notice_handler(callback)  # type: ignore[misc]
        self._tg_handlers = (*self._tg_handlers, callback)

    def remove_notice_handler(self, callback: Any) -> None:
        super().remove_notice_handler(callback)  # type: ignore[misc]
        self._tg_handlers = tuple(h for h in self._tg_handlers if h is not callback)

    def add_notify_handler(self, callback: Any) -> None:
        super().add_notify_handler(callback)  # type: ignore[misc]
        self._tg_handlers = (*self._tg_handlers, callback)

    def remove_notify_handler(self, callback: Any) -> None:
        super().remove_notify_handler(callback)  # type: ignore[misc]
        self._tg_handlers = tuple(h for h in self._tg_handlers if h is not callback)


class TenantConnection(_TrackedHandlers, psycopg.Connection[Row]):
    """A psycopg connection that binds every transaction to the current tenant."""

    _tg: ConnState | None = None
    _tg_fast: bool = FAST_PATH
    _tg_bind_ready: bool = False  # the binding is prepared on the server
    _tg_raw: psycopg.Cursor[Any] | None = None
    _tg_cur: TenantCursor[Any] | None = None  # the last execute()'s cursor (see _reuse)

    # Set through a lease, these outlive it (see _pool.client_changed): marked when set.
    _tg_client_dirty: bool = False
    prepare_threshold = _marking(psycopg.Connection.prepare_threshold)
    prepared_max = _marking(psycopg.Connection.prepared_max)

    def set_autocommit(self, value: bool) -> None:
        self._tg_client_dirty = True
        super().set_autocommit(value)

    def set_isolation_level(self, value: Any) -> None:
        self._tg_client_dirty = True
        super().set_isolation_level(value)

    def set_read_only(self, value: bool | None) -> None:
        self._tg_client_dirty = True
        super().set_read_only(value)

    def set_deferrable(self, value: bool | None) -> None:
        self._tg_client_dirty = True
        super().set_deferrable(value)

    def _raw_cursor(self) -> psycopg.Cursor[Any]:
        # A plain psycopg cursor: internal statements must not recurse into binding.
        if self._tg_raw is None or self._tg_raw.closed:
            self._tg_raw = psycopg.Cursor(self)
        return self._tg_raw

    def commit(self) -> None:
        _held(self)
        super().commit()

    def rollback(self) -> None:
        _held(self)
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
        st = self._tg
        if st is not None and st.owner_of() != st.owner:
            st.check_owner()  # before the kept cursor is touched: it may be another lease's
        if st is None or not _REUSE or isinstance(query, _TEMPLATES):
            cur = _untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            return cur  # type: ignore[no-any-return]
        cur = _reuse.reusable(self, binary)
        if cur is None:
            cur = self._tg_cur = self.cursor(binary=binary)  # type: ignore[assignment]
        return cur.execute(query, params, prepare=prepare)  # type: ignore[no-any-return]

    def _bind_out_of_band(self, what: str) -> None:
        """Bind before an operation that cannot be pipelined (COPY, streaming, DECLARE)."""
        st = self._tg
        if st is None:
            return
        status = self.pgconn.transaction_status
        bind = st.bind_needed(status, _in_pipeline(self), what)
        if bind is None:
            return
        if status == IDLE and self.autocommit:
            raise UnsupportedOperation(_NEEDS_TX.format(what=what))
        self._raw_cursor().execute(*bind)
        st.after_statement(self.pgconn.transaction_status)

    @contextmanager
    def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> Iterator[Transaction]:
        st = self._tg
        if st is None or self.pgconn.transaction_status != IDLE or _in_pipeline(self):
            # Not ours, or nested: a savepoint inside an already-bound transaction.
            with super().transaction(savepoint_name, force_rollback) as tx:
                yield tx
            return
        bind = st.bind_needed(IDLE, False, "a transaction")
        assert bind is not None
        tx = Transaction(self, savepoint_name, force_rollback)
        entered = False
        try:
            with self.pipeline():  # BEGIN and the binding: one round trip
                tx.__enter__()
                entered = True
                self._raw_cursor().execute(*bind)
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


# ------------------------------------------------------------------------- async


class AsyncTenantCursor(psycopg.AsyncCursor[Row]):
    """The asyncio twin of :class:`TenantCursor`."""

    _conn: AsyncTenantConnection[Any]

    async def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> AsyncTenantCursor[Row]:
        conn = self._conn
        st = conn._tg
        if st is None:
            await _untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            return self
        if _fast_path_open(conn):  # one autocommit statement (fail-closed in autocommit_bind)
            binding, encoded = st.autocommit_bind()
            await self._fast_execute(st, binding, encoded, query, params, prepare, binary)
            st.bound = conn.pgconn.transaction_status != IDLE
            return self
        in_pipeline = _in_pipeline(conn)
        bind = st.bind_needed(conn.pgconn.transaction_status, in_pipeline)
        st.note(query, conn.pgconn, params is not None)
        if bind is None:
            await _untyped(super()).execute(query, params, prepare=prepare, binary=binary)
        elif in_pipeline:
            await conn._raw_cursor().execute(*bind)
            await _untyped(super()).execute(query, params, prepare=prepare, binary=binary)
        else:
            async with conn.pipeline():
                await conn._raw_cursor().execute(*bind)
                await _untyped(super()).execute(query, params, prepare=prepare, binary=binary)
        st.after_statement(conn.pgconn.transaction_status)
        return self

    async def _fast_execute(
        self,
        st: ConnState,
        bind: tuple[str, tuple[str, ...]],
        encoded: list[bytes] | None,
        query: Query,
        params: Params | None,
        prepare: bool | None,
        binary: bool | None,
    ) -> None:
        conn = self._conn
        if encoded is None:
            encoded = encode_values(bind[1], self._encoding)
        try:
            try:
                async with conn.lock:
                    await conn.wait(
                        bound_execute_gen(
                            self, st, bind, encoded, query, params, prepare=prepare, binary=binary
                        )
                    )
            except BindStatementMissing:  # the server forgot the binding: once more
                async with conn.lock:
                    await conn.wait(
                        bound_execute_gen(
                            self, st, bind, encoded, query, params, prepare=prepare, binary=binary
                        )
                    )
        except NO_TRACEBACK as ex:
            raise ex.with_traceback(None) from None

    async def executemany(
        self, query: Query, params_seq: Iterable[Params], *, returning: bool = False
    ) -> None:
        conn = self._conn
        st = conn._tg
        if st is None:
            return await super().executemany(query, params_seq, returning=returning)
        in_pipeline = _in_pipeline(conn)
        bind = st.bind_needed(conn.pgconn.transaction_status, in_pipeline)
        params_seq = _screened(st, query, conn.pgconn, params_seq)
        first = next(params_seq, _NO_PARAMS)  # screened: refused before anything is sent
        if first is _NO_PARAMS:
            return None
        params_seq = itertools.chain((first,), params_seq)
        if bind is None:
            await super().executemany(query, params_seq, returning=returning)
        elif in_pipeline:
            await conn._raw_cursor().execute(*bind)
            await super().executemany(query, params_seq, returning=returning)
        else:
            async with conn.pipeline():
                await conn._raw_cursor().execute(*bind)
                await super().executemany(query, params_seq, returning=returning)
        st.after_statement(conn.pgconn.transaction_status)
        return None

    @asynccontextmanager
    async def copy(
        self, statement: Query, params: Params | None = None, *, writer: Any = None
    ) -> AsyncIterator[AsyncCopy]:
        await self._conn._bind_out_of_band("COPY")
        if self._conn._tg is not None:
            self._conn._tg.note(statement, self._conn.pgconn, params is not None)
        async with super().copy(statement, params, writer=writer) as cp:
            yield cp

    async def stream(
        self, query: Query, params: Params | None = None, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Row]:
        await self._conn._bind_out_of_band("stream()")
        if self._conn._tg is not None:
            self._conn._tg.note(query, self._conn.pgconn, params is not None)
        async for row in super().stream(query, params, *args, **kwargs):
            yield row


class AsyncTenantServerCursor(psycopg.AsyncServerCursor[Row]):
    _conn: AsyncTenantConnection[Any]

    async def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        binary: bool | None = None,
        **kwargs: Any,
    ) -> AsyncTenantServerCursor[Row]:
        await self._conn._bind_out_of_band("a server-side cursor")
        if self._conn._tg is not None:
            self._conn._tg.note(query, self._conn.pgconn, params is not None)
            if self.withhold:
                self._conn._tg.screen(frozenset({"hold_cursor"}), self._conn.pgconn)
        await super().execute(query, params, binary=binary, **kwargs)
        return self

    async def fetchone(self) -> Row | None:
        _held(self._conn)
        return await super().fetchone()

    async def fetchmany(self, size: int = 0) -> list[Row]:
        _held(self._conn)
        return await super().fetchmany(size)

    async def fetchall(self) -> list[Row]:
        _held(self._conn)
        return await super().fetchall()

    async def __anext__(self) -> Row:
        _held(self._conn)
        return await super().__anext__()

    async def scroll(self, value: int, mode: str = "relative") -> None:
        _held(self._conn)
        await super().scroll(value, mode)

    async def close(self) -> None:
        _held(self._conn)
        await super().close()


class AsyncTenantConnection(_TrackedHandlers, psycopg.AsyncConnection[Row]):
    """The asyncio twin of :class:`TenantConnection`."""

    _tg: ConnState | None = None
    _tg_fast: bool = FAST_PATH
    _tg_bind_ready: bool = False
    _tg_raw: psycopg.AsyncCursor[Any] | None = None
    _tg_cur: AsyncTenantCursor[Any] | None = None

    # Set through a lease, these outlive it (see _pool.client_changed): marked when set.
    _tg_client_dirty: bool = False
    prepare_threshold = _marking(psycopg.AsyncConnection.prepare_threshold)
    prepared_max = _marking(psycopg.AsyncConnection.prepared_max)

    async def set_autocommit(self, value: bool) -> None:
        self._tg_client_dirty = True
        await super().set_autocommit(value)

    async def set_isolation_level(self, value: Any) -> None:
        self._tg_client_dirty = True
        await super().set_isolation_level(value)

    async def set_read_only(self, value: bool | None) -> None:
        self._tg_client_dirty = True
        await super().set_read_only(value)

    async def set_deferrable(self, value: bool | None) -> None:
        self._tg_client_dirty = True
        await super().set_deferrable(value)

    def _raw_cursor(self) -> psycopg.AsyncCursor[Any]:
        if self._tg_raw is None or self._tg_raw.closed:
            self._tg_raw = psycopg.AsyncCursor(self)
        return self._tg_raw

    async def commit(self) -> None:
        _held(self)
        await super().commit()

    async def rollback(self) -> None:
        _held(self)
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
        st = self._tg
        if st is not None and st.owner_of() != st.owner:
            st.check_owner()
        if st is None or not _REUSE or isinstance(query, _TEMPLATES):
            cur = await _untyped(super()).execute(query, params, prepare=prepare, binary=binary)
            return cur  # type: ignore[no-any-return]
        cur = _reuse.reusable(self, binary)
        if cur is None:
            cur = self._tg_cur = self.cursor(binary=binary)  # type: ignore[assignment]
        return await cur.execute(query, params, prepare=prepare)  # type: ignore[no-any-return]

    async def _bind_out_of_band(self, what: str) -> None:
        st = self._tg
        if st is None:
            return
        status = self.pgconn.transaction_status
        bind = st.bind_needed(status, _in_pipeline(self), what)
        if bind is None:
            return
        if status == IDLE and self.autocommit:
            raise UnsupportedOperation(_NEEDS_TX.format(what=what))
        await self._raw_cursor().execute(*bind)
        st.after_statement(self.pgconn.transaction_status)

    @asynccontextmanager
    async def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> AsyncIterator[AsyncTransaction]:
        st = self._tg
        if st is None or self.pgconn.transaction_status != IDLE or _in_pipeline(self):
            async with super().transaction(savepoint_name, force_rollback) as tx:
                yield tx
            return
        bind = st.bind_needed(IDLE, False, "a transaction")
        assert bind is not None
        tx = AsyncTransaction(self, savepoint_name, force_rollback)
        entered = False
        try:
            async with self.pipeline():
                await tx.__aenter__()
                entered = True
                await self._raw_cursor().execute(*bind)
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
