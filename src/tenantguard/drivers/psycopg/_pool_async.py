"""AsyncTenantPool: psycopg_pool with tenant binding and a checkin guard (asyncio).

This is the source of :class:`TenantPool` too: ``tools/async_to_sync.py`` generates
:mod:`._pool` from it, and CI (``make lint``) fails when the two disagree. Edit this file,
then run the tool; an ``if _ASYNC: ... else: ...`` block keeps its ``else`` branch only in
the sync module. What does no I/O is in :mod:`._pool_base`: configuration, the guard's
decisions, the checkin guard's steps (driven here by a thin loop).

Built on psycopg_pool: its ``configure=`` hook records each new connection's clean
state and re-checks the login role; the lease runs the checkin guard itself, before it
hands the connection back with ``putconn`` (a connection the guard cannot prove clean is
closed, and psycopg_pool replaces it). The request path is::

    with tenant(42):  # a validated id in a contextvar
        async with pool.connection() as conn:  # leased to tenant 42, no I/O before this
            await conn.execute(...)  # set_config(.., true) + the statement: 1 round trip
    # at checkin the guard resets or discards what a lease left behind
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from tenantguard.core.binding import Binder
from tenantguard.core.context import _current
from tenantguard.core.dsn import check_dsn, connect_error
from tenantguard.core.guard import STATE_QUERY, GuardStats
from tenantguard.core.ids import TenantKind
from tenantguard.core.session import normalize_context
from tenantguard.core.signing import SigningKey
from tenantguard.drivers.psycopg import _internals
from tenantguard.drivers.psycopg._connection_async import (
    AsyncTenantConnection,
    AsyncTenantCursor,
    AsyncTenantServerCursor,
)
from tenantguard.drivers.psycopg._connection_base import note_attributes, track_handlers
from tenantguard.drivers.psycopg._internals import adapters_changed
from tenantguard.drivers.psycopg._pool_base import (
    HELPER_EXISTS_QUERY,
    HELPER_SETTINGS_QUERY,
    IDLE,
    SESSION_DEFAULTS_QUERY,
    TENANT_TYPES_QUERY,
    LeaseBase,
    OnContamination,
    PoolCore,
    SessionState,
    Verify,
    check_pool_kwargs,
    client_state,
    logger,
    release_cursor,
)
from tenantguard.errors import ConfigurationError, NoTenantContext

__all__ = ["AsyncTenantPool"]

_ASYNC = True


class AsyncTenantPool:
    """A psycopg_pool ``AsyncConnectionPool`` whose connections are bound to a tenant.

    Takes psycopg_pool's sizing and lifecycle arguments (``min_size``, ``max_size``,
    ``timeout``, ``max_idle``, ``max_lifetime``...; not ``close_returns``, which would let a
    connection the guard closes go back to the pool) and its ``kwargs`` for
    :meth:`psycopg.AsyncConnection.connect`. Connections are autocommit by default, so
    a single statement costs one round trip; use ``async with conn.transaction():`` for
    atomic groups of statements. Open it with ``async with AsyncTenantPool(...)`` or
    ``await pool.open()``.

    :param tenant_kind: the type of the tenant column (``int``, ``bigint``, ``uuid``,
        ``text``); ids are checked against it before any I/O.
    :param setting: the transaction-local setting the policies read.
    :param binder: replace the plain setting with another binding step.
    :param signing_key: bind signed contexts (``<key id>:<secret>`` or a
        :class:`~tenantguard.core.signing.SigningKey`), for a database installed with
        ``--signed``; by default the ``TENANTGUARD_SIGNING_KEY`` environment variable, if set.
    :param check_role: refuse to start when the login role can bypass RLS.
    :param verify: ``"suspect"`` (the default) checks session state at checkin only
        for connections whose statements could change it; ``"always"`` checks every
        checkin (one more round trip per request; the default with ``allow_temp``).
    :param on_contamination: ``"reset"`` (DISCARD ALL, then verify) or ``"discard"``.
    :param allow_temp: accept a login role that can create temporary objects (refused
        by default: code it leaves in ``pg_temp`` runs in the next tenant's statements);
        every checkin is then verified.
    :param pin_session: bind the login's default role and search_path with the tenant,
        transaction-locally, so session state left on a server connection by another
        client of a PgBouncer cannot change what a request runs as.
    :param session_state: ``"refuse"`` (the default): a statement that could leave session
        state on the connection (``SET`` without ``LOCAL``, ``LISTEN``, ``PREPARE``,
        ``DEALLOCATE``, ``DISCARD``, ``DO``/``CALL``, session advisory locks, ``WITH HOLD``
        cursors, SQL that does not parse) raises
        :class:`~tenantguard.core.session.SessionStateRefused` before it is sent. This is
        the only safe mode behind a transaction-mode PgBouncer, where other clients'
        transactions run on the same server connection during the lease. ``"reset"`` sends
        them and the checkin guard verifies and resets the connection: direct connections
        only.
    :param open: open the pool in the constructor (the sync pool's default, as psycopg_pool's;
        an asyncio pool cannot: ``await pool.open()``).
    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        tenant_kind: TenantKind | None = None,
        setting: str = "app.tenant_id",
        user_setting: str = "app.user_id",
        binder: Binder | None = None,
        signing_key: SigningKey | str | None = None,
        tenant_column: str = "tenant_id",
        check_role: bool = True,
        verify: Verify | None = None,
        on_contamination: OnContamination = "reset",
        allow_temp: bool = False,
        pin_session: bool = True,
        session_state: SessionState = "refuse",
        kwargs: dict[str, Any] | None = None,
        open: bool | None = None,
        **pool_kwargs: Any,
    ) -> None:
        check_dsn(conninfo)
        check_pool_kwargs(pool_kwargs)
        self._core = PoolCore(
            tenant_kind=tenant_kind,
            binder=binder,
            signing_key=signing_key,
            setting=setting,
            user_setting=user_setting,
            tenant_column=tenant_column,
            check_role=check_role,
            verify=verify,
            on_contamination=on_contamination,
            allow_temp=allow_temp,
            pin_session=pin_session,
            session_state=session_state,
        )
        self.conninfo = conninfo
        self._kwargs: dict[str, Any] = {"autocommit": True, **(kwargs or {})}
        self._pool: AsyncConnectionPool[AsyncTenantConnection[Any]] = AsyncConnectionPool(
            conninfo,
            connection_class=AsyncTenantConnection,
            kwargs=self._kwargs,
            configure=self._configure,
            open=False,
            **pool_kwargs,
        )
        if _ASYNC:
            if open:
                raise ConfigurationError(
                    "an AsyncTenantPool cannot open in its constructor",
                    hint="use `async with AsyncTenantPool(...) as pool:` or `await pool.open()`",
                )
        elif open is None or open:
            self.open()

    # -- lifecycle -------------------------------------------------------------
    @property
    def guard_stats(self) -> GuardStats:
        return self._core.guard_stats

    @property
    def pool(self) -> AsyncConnectionPool[AsyncTenantConnection[Any]]:
        """The underlying psycopg_pool pool (for stats and sizing)."""
        return self._pool

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Check the login role on a direct connection, then open the pool."""
        if not self._pool.closed:
            return
        await self.check()
        await self._pool.open(wait=wait, timeout=timeout)

    async def check(self) -> None:
        """Connect once and refuse an unsafe login role or a mismatched helper setting."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.conninfo, **self._kwargs)
        except psycopg.Error as exc:
            raise connect_error(self.conninfo, exc) from None
        async with conn:
            if self._core.check_role:
                query, params = self._core.role_query()
                cur = await conn.execute(query, params)
                self._core.raise_if_unsafe(await cur.fetchone())
            cur = await conn.execute(HELPER_EXISTS_QUERY)
            if await cur.fetchone() == (True,):
                cur = await conn.execute(HELPER_SETTINGS_QUERY)
                self._core.check_helper(await cur.fetchone())
            cur = await conn.execute(SESSION_DEFAULTS_QUERY)
            self._core.set_session_defaults(await cur.fetchone())
            cur = await conn.execute(TENANT_TYPES_QUERY, (self._core.tenant_column,))
            self._core.infer_kind(await cur.fetchall())

    async def close(self, timeout: float = 5.0) -> None:
        await self._pool.close(timeout=timeout)

    async def __aenter__(self) -> AsyncTenantPool:
        await self.open(wait=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- psycopg_pool hooks ----------------------------------------------------
    async def _configure(self, conn: AsyncTenantConnection[Any]) -> None:
        conn.cursor_factory = AsyncTenantCursor
        conn.server_cursor_factory = AsyncTenantServerCursor
        track_handlers(conn)
        # Before any statement: nothing cached yet. (Without the fast path a threshold the
        # caller chose is kept, with psycopg's own cache: see exact_prepared.)
        _internals.exact_prepared(conn, keep_threshold="prepare_threshold" in self._kwargs)
        cur = conn._raw_cursor()  # made now, before any lease: see _raw_cursor
        if self._core.check_role:
            query, params = self._core.role_query()
            await cur.execute(query, params)
            self._core.raise_if_unsafe(await cur.fetchone())
        st = self._core.new_state(asyncio.current_task)
        await cur.execute(STATE_QUERY, (self._core.setting, self._core.user_setting))
        self._core.set_baseline(conn, st, await cur.fetchone())
        if conn.pgconn.transaction_status != IDLE:  # non-autocommit pools
            await conn.rollback()
        conn._tg_state = st
        st.client = client_state(conn)
        conn._tg_client_changed = False
        note_attributes(conn)
        conn._tg_adapters = _internals.adapters_tables(conn)  # (after client_state's watch)

    async def _checkin(self, conn: AsyncTenantConnection[Any]) -> None:
        """The checkin guard's full steps (see :meth:`PoolCore.checkin_steps`), when the
        clean path (:meth:`PoolCore.checkin_clean`, run by the lease first) was not enough."""
        steps = self._core.checkin_steps(conn)
        cur = conn._raw_cursor()  # not the connection's adapters as a lease left them
        try:
            step = next(steps)
            while True:
                kind, query, params = step
                try:
                    result = None
                    if kind == "close":
                        await conn.close()
                    else:
                        await cur.execute(query, params)
                        result = await cur.fetchone() if kind == "fetch" else None
                except Exception as exc:
                    step = steps.throw(exc)
                    continue
                step = steps.send(result)
        except StopIteration:
            pass

    # -- the request path ------------------------------------------------------
    def connection(
        self, timeout: float | None = None, *, tenant_id: object | None = None
    ) -> _AsyncLease:
        """A connection leased to the current tenant (or *tenant_id*) for the block.

        Raises :class:`~tenantguard.errors.NoTenantContext` before any I/O when no
        tenant is bound. On normal exit an open transaction (non-autocommit) is
        committed, on error rolled back; then the checkin guard runs.
        """
        return _AsyncLease(self, timeout, tenant_id)

    def __repr__(self) -> str:
        return f"<AsyncTenantPool {self._pool.name!r} {self._core.binder!r}>"


class _AsyncLease(LeaseBase):
    """``async with pool.connection() as conn:`` (a class, not a generator: the hot path)."""

    __slots__ = ()
    pool: AsyncTenantPool
    conn: AsyncTenantConnection[Any] | None

    async def __aenter__(self) -> AsyncTenantConnection[Any]:
        if self.tenant_id is not None:
            self._enter_tenant()
        try:
            # The bound context, fail-closed before any I/O, and the same normalised to the
            # pool's tenant kind (what the connection binds).
            ctx = _current.get()
            if ctx is None:
                raise NoTenantContext("pool.connection()")
            core = self.pool._core
            kind = core.tenant_kind
            st_ctx = (
                ctx if kind is None or ctx.tenant.kind == kind else normalize_context(ctx, kind)
            )
            conn = await self.pool._pool.getconn(self.timeout)
            st = conn._tg_state
            assert st is not None
            # Still leased: handed back to psycopg_pool mid-lease (``pool.pool.putconn``)
            # by a lease that goes on; it must not share the connection with this one.
            stale = st.lease is not None
            # Owned first, then checked: a reference kept past its lease that marks the
            # connection before this (see screen_wait) is seen below; after it, refused.
            st.start_lease(ctx, st_ctx)
            # Changed while in the pool? One read per flag (all 0 when not) before the
            # full check, which records what it finds.
            pg = conn.pgconn
            while (
                # Identities first: nothing a lease may have planted is called before them.
                pg is not conn._tg_public[0]
                or conn.lock is not conn._tg_public[1]
                or stale
                or pg.status
                or pg.transaction_status
                or pg.pipeline_status
                or conn._tg_client_changed
                or conn._tg_notice
                or conn._tg_notify
                or conn.lock.locked()  # held by a reference kept past its lease
                or len(conn.__dict__) != conn._tg_dict_len  # (see attributes_replaced)
                or adapters_changed(conn)  # registered by any route, psycopg's base classes too
            ) and core.checkout_refused(conn, stale):
                st.end_lease()
                if not conn.closed:
                    await conn.close()
                await self.pool._pool.putconn(conn)  # psycopg_pool discards and replaces it
                conn = await self.pool._pool.getconn(self.timeout)
                st = conn._tg_state
                assert st is not None
                stale = st.lease is not None
                st.start_lease(ctx, st_ctx)
                pg = conn.pgconn
        except BaseException:
            self._exit_tenant()
            raise
        self.conn = conn
        return conn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        conn = self.conn
        assert conn is not None
        pool = self.pool
        try:
            if exc_type is not None:
                if not conn.closed and conn.pgconn.transaction_status != IDLE:
                    try:
                        await conn.rollback()
                    except Exception:
                        logger.debug("rollback failed on a returned connection", exc_info=True)
                return
            if conn.pgconn.transaction_status:  # not IDLE
                action = pool._core.exit_action(conn)
                if action == "rollback":
                    await conn.rollback()
                elif action == "commit":
                    await conn.commit()
        finally:
            try:
                try:
                    release_cursor(conn)
                    if not pool._core.checkin_clean(conn):  # (the clean path, inlined)
                        await pool._checkin(conn)
                except BaseException:
                    await conn.close()  # not proven clean: psycopg_pool discards it
                    raise
                finally:
                    await pool._pool.putconn(conn)
            finally:  # the tenant_id= scope ends even when putconn raises
                self.conn = None
                if self.tenant_cm is not None:
                    self._exit_tenant()
