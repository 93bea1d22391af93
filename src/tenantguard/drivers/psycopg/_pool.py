# WARNING: this file is generated from _pool_async.py by tools/async_to_sync.py.
# Edit the async source and run the tool; CI checks that they agree.
"""TenantPool: psycopg_pool with tenant binding and a checkin guard.

Generated from :mod:`._pool_async` by ``tools/async_to_sync.py``: edit that
file, then run the tool (``make lint`` checks that they agree).

Built on psycopg_pool: its ``configure=`` hook records each new connection's clean
state and re-checks the login role; the lease runs the checkin guard itself, before it
hands the connection back with ``putconn`` (a connection the guard cannot prove clean is
closed, and psycopg_pool replaces it). The request path is::

    with tenant(42):  # a validated id in a contextvar
        with pool.connection() as conn:  # leased to tenant 42, no I/O before this
            conn.execute(...)  # set_config(.., true) + the statement: 1 round trip
    # at checkin the guard resets or discards what a lease left behind
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from tenantguard.core.binding import Binder
from tenantguard.core.context import _current
from tenantguard.core.dsn import check_dsn, connect_error
from tenantguard.core.guard import STATE_QUERY, GuardStats
from tenantguard.core.ids import TenantKind
from tenantguard.core.session import normalize_context
from tenantguard.core.signing import SigningKey
from tenantguard.drivers.psycopg import _internals
from tenantguard.drivers.psycopg._connection import (
    TenantConnection,
    TenantCursor,
    TenantServerCursor,
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
from tenantguard.errors import NoTenantContext

__all__ = ["TenantPool"]


class TenantPool:
    """A psycopg_pool ``ConnectionPool`` whose connections are bound to a tenant.

    Takes psycopg_pool's sizing and lifecycle arguments (``min_size``, ``max_size``,
    ``timeout``, ``max_idle``, ``max_lifetime``...; not ``close_returns``, which would let a
    connection the guard closes go back to the pool) and its ``kwargs`` for
    :meth:`psycopg.Connection.connect`. Connections are autocommit by default, so
    a single statement costs one round trip; use ``with conn.transaction():`` for
    atomic groups of statements. Open it with ``with TenantPool(...)`` or
    ``pool.open()``.

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
        an asyncio pool cannot: ``pool.open()``).
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
        self._pool: ConnectionPool[TenantConnection[Any]] = ConnectionPool(
            conninfo,
            connection_class=TenantConnection,
            kwargs=self._kwargs,
            configure=self._configure,
            open=False,
            **pool_kwargs,
        )
        if open is None or open:
            self.open()

    # -- lifecycle -------------------------------------------------------------

    @property
    def guard_stats(self) -> GuardStats:
        return self._core.guard_stats

    @property
    def pool(self) -> ConnectionPool[TenantConnection[Any]]:
        """The underlying psycopg_pool pool (for stats and sizing)."""
        return self._pool

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Check the login role on a direct connection, then open the pool."""
        if not self._pool.closed:
            return
        self.check()
        self._pool.open(wait=wait, timeout=timeout)

    def check(self) -> None:
        """Connect once and refuse an unsafe login role or a mismatched helper setting."""
        try:
            conn = psycopg.Connection.connect(self.conninfo, **self._kwargs)
        except psycopg.Error as exc:
            raise connect_error(self.conninfo, exc) from None
        with conn:
            if self._core.check_role:
                query, params = self._core.role_query()
                cur = conn.execute(query, params)
                self._core.raise_if_unsafe(cur.fetchone())
            cur = conn.execute(HELPER_EXISTS_QUERY)
            if cur.fetchone() == (True,):
                cur = conn.execute(HELPER_SETTINGS_QUERY)
                self._core.check_helper(cur.fetchone())
            cur = conn.execute(SESSION_DEFAULTS_QUERY)
            self._core.set_session_defaults(cur.fetchone())
            cur = conn.execute(TENANT_TYPES_QUERY, (self._core.tenant_column,))
            self._core.infer_kind(cur.fetchall())

    def close(self, timeout: float = 5.0) -> None:
        self._pool.close(timeout=timeout)

    def __enter__(self) -> TenantPool:
        self.open(wait=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- psycopg_pool hooks ----------------------------------------------------

    def _configure(self, conn: TenantConnection[Any]) -> None:
        conn.cursor_factory = TenantCursor
        conn.server_cursor_factory = TenantServerCursor
        track_handlers(conn)
        # Before any statement: nothing cached yet. (Without the fast path a threshold the
        # caller chose is kept, with psycopg's own cache: see exact_prepared.)
        _internals.exact_prepared(conn, keep_threshold="prepare_threshold" in self._kwargs)
        cur = conn._raw_cursor()  # made now, before any lease: see _raw_cursor
        if self._core.check_role:
            query, params = self._core.role_query()
            cur.execute(query, params)
            self._core.raise_if_unsafe(cur.fetchone())
        st = self._core.new_state(threading.get_ident)
        cur.execute(STATE_QUERY, (self._core.setting, self._core.user_setting))
        self._core.set_baseline(conn, st, cur.fetchone())
        if conn.pgconn.transaction_status != IDLE:  # non-autocommit pools
            conn.rollback()
        conn._tg_state = st
        st.client = client_state(conn)
        conn._tg_client_changed = False
        note_attributes(conn)
        conn._tg_adapters = _internals.adapters_tables(conn)  # (after client_state's watch)

    def _checkin(self, conn: TenantConnection[Any]) -> None:
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
                        conn.close()
                    else:
                        cur.execute(query, params)
                        result = cur.fetchone() if kind == "fetch" else None
                except Exception as exc:
                    step = steps.throw(exc)
                    continue
                step = steps.send(result)
        except StopIteration:
            pass

    # -- the request path ------------------------------------------------------

    def connection(
        self, timeout: float | None = None, *, tenant_id: object | None = None
    ) -> _Lease:
        """A connection leased to the current tenant (or *tenant_id*) for the block.

        Raises :class:`~tenantguard.errors.NoTenantContext` before any I/O when no
        tenant is bound. On normal exit an open transaction (non-autocommit) is
        committed, on error rolled back; then the checkin guard runs.
        """
        return _Lease(self, timeout, tenant_id)

    def __repr__(self) -> str:
        return f"<TenantPool {self._pool.name!r} {self._core.binder!r}>"


class _Lease(LeaseBase):
    """``with pool.connection() as conn:`` (a class, not a generator: the hot path)."""

    __slots__ = ()
    pool: TenantPool
    conn: TenantConnection[Any] | None

    def __enter__(self) -> TenantConnection[Any]:
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
            conn = self.pool._pool.getconn(self.timeout)
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
                pg is not conn._tg_public[0]
                or conn.lock is not conn._tg_public[1]
                or stale
                or pg.status
                or pg.transaction_status
                or pg.pipeline_status
                or conn._tg_client_changed
                or conn._tg_notice
                or conn._tg_notify
                or conn.lock.locked()
                or (len(conn.__dict__) != conn._tg_dict_len)
                or adapters_changed(conn)
            ) and core.checkout_refused(conn, stale):
                # Identities first: nothing a lease may have planted is called before them.
                # held by a reference kept past its lease
                # (see attributes_replaced)
                # registered by any route, psycopg's base classes too
                st.end_lease()
                if not conn.closed:
                    conn.close()
                self.pool._pool.putconn(conn)  # psycopg_pool discards and replaces it
                conn = self.pool._pool.getconn(self.timeout)
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

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        conn = self.conn
        assert conn is not None
        pool = self.pool
        try:
            if exc_type is not None:
                if not conn.closed and conn.pgconn.transaction_status != IDLE:
                    try:
                        conn.rollback()
                    except Exception:
                        logger.debug("rollback failed on a returned connection", exc_info=True)
                return
            if conn.pgconn.transaction_status:  # not IDLE
                action = pool._core.exit_action(conn)
                if action == "rollback":
                    conn.rollback()
                elif action == "commit":
                    conn.commit()
        finally:
            try:
                try:
                    release_cursor(conn)
                    if not pool._core.checkin_clean(conn):  # (the clean path, inlined)
                        pool._checkin(conn)
                except BaseException:
                    conn.close()  # not proven clean: psycopg_pool discards it
                    raise
                finally:
                    pool._pool.putconn(conn)
            finally:  # the tenant_id= scope ends even when putconn raises
                self.conn = None
                if self.tenant_cm is not None:
                    self._exit_tenant()
