"""What TenantPool and AsyncTenantPool share: configuration, guard decisions, no I/O.

:class:`PoolCore` holds a pool's configuration and stats and makes every decision of the
request path and the checkin guard (:meth:`PoolCore.checkin_steps` is a generator of the
statements to run, driven by a thin loop in each pool). The pools themselves are in
:mod:`._pool_async` (the source) and :mod:`._pool` (generated from it by
``tools/async_to_sync.py``).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Literal

from psycopg.pq import PipelineStatus, TransactionStatus
from psycopg_pool import ConnectionPool

from tenantguard.core.binding import Binder, SettingBinder
from tenantguard.core.classify import LOCAL_ONLY, StatementClassifier
from tenantguard.core.context import TenantContext, tenant
from tenantguard.core.guard import (
    STATE_QUERY,
    GuardStats,
    SessionSnapshot,
    changed_kinds,
    snapshot,
)
from tenantguard.core.ids import TenantKind, kind_for_type, parse_tenant_id
from tenantguard.core.rolecheck import ROLE_CHECK_QUERY, code_report, role_params, role_report
from tenantguard.core.session import (
    LEXER_PARAMS,
    BindCache,
    ConnState,
    OwnerOf,
)
from tenantguard.core.signing import SignedBinder, SigningKey, key_from_env, parse_signing_key
from tenantguard.drivers.psycopg import _internals
from tenantguard.drivers.psycopg._connection_base import attributes_replaced, registering
from tenantguard.drivers.psycopg._reuse import release as release_cursor
from tenantguard.errors import (
    ConfigurationError,
    ContaminatedConnection,
    UnsafeRoleError,
    UsageError,
)

if TYPE_CHECKING:
    from tenantguard.drivers.psycopg._connection import TenantConnection
    from tenantguard.drivers.psycopg._connection_async import AsyncTenantConnection

__all__ = [
    "HELPER_EXISTS_QUERY",
    "HELPER_SETTINGS_QUERY",
    "IDLE",
    "SESSION_DEFAULTS_QUERY",
    "TENANT_TYPES_QUERY",
    "LeaseBase",
    "OnContamination",
    "PoolCore",
    "SessionState",
    "Verify",
    "check_pool_kwargs",
    "client_state",
    "logger",
    "release_cursor",
]

logger = logging.getLogger("tenantguard.guard")

IDLE = TransactionStatus.IDLE
PIPELINE_OFF = PipelineStatus.OFF
INTRANS = TransactionStatus.INTRANS
INERROR = TransactionStatus.INERROR

Verify = Literal["suspect", "always"]
Step = tuple[str, Any, Any]
OnContamination = Literal["reset", "discard"]
SessionState = Literal["refuse", "reset"]
# Client-only encodings: a multibyte character can end in an ASCII quote or backslash, so
# the server and the classifier could split the same text differently.
_UNSAFE_ENCODINGS = {b"SJIS", b"SHIFT_JIS_2004", b"BIG5", b"GBK", b"GB18030", b"UHC", b"JOHAB"}

# Kinds the server snapshot cannot see (custom settings are not enumerable, code in
# DO/CALL bodies is opaque): a connection flagged with these is always reset.
# Catalog lookup (to_regprocedure needs USAGE on the schema and errors without it).
HELPER_EXISTS_QUERY = (
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p "
    "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
    "WHERE n.nspname = 'tenantguard' AND p.proname = 'tenant_setting' "
    "AND has_schema_privilege(n.oid, 'USAGE') AND has_function_privilege(p.oid, 'EXECUTE'))"
)
HELPER_SETTINGS_QUERY = "SELECT tenantguard.tenant_setting(), tenantguard.user_setting()"
# The search_path pinned in every binding: reset_val is what RESET restores (the role's
# and database's defaults, the connection options), never a session-level SET left on the
# server connection by another client. The role is pinned to 'none': the login itself.
SESSION_DEFAULTS_QUERY = (
    "SELECT s.reset_val FROM pg_catalog.pg_settings s WHERE s.name = 'search_path'"
)
# The tenant column's types in the tables row level security protects (the pool's
# tenant kind, when not given).
TENANT_TYPES_QUERY = (
    "SELECT DISTINCT pg_catalog.format_type(a.atttypid, NULL) "
    "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
    "WHERE c.relrowsecurity AND c.relkind IN ('r', 'p') AND a.attname = %s "
    "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1"
)


#: psycopg_pool's default ``min_size`` (``max_size`` defaults to ``min_size``).
_MIN_SIZE_DEFAULT: int = inspect.signature(ConnectionPool).parameters["min_size"].default


def _check_sizes(pool_kwargs: dict[str, Any]) -> None:
    """psycopg_pool's sizing rules, as a tenantguard error that says what to pass."""
    min_size = pool_kwargs.get("min_size", _MIN_SIZE_DEFAULT)
    max_size = pool_kwargs.get("max_size")
    if max_size is None:
        max_size = min_size
    shown = f"min_size={min_size}" + ("" if "min_size" in pool_kwargs else " (the default)")
    if min_size < 0:
        raise UsageError(f"{shown} is negative", hint="pass min_size=0 or more")
    if max_size < min_size:
        raise UsageError(
            f"max_size={max_size} is smaller than {shown}: psycopg_pool needs min_size <= max_size",
            hint=f"pass min_size too, for example min_size={max_size}, max_size={max_size}",
        )
    if min_size == max_size == 0:
        raise UsageError(
            "min_size=0 needs a max_size above 0 (psycopg_pool opens connections on demand "
            "up to max_size)",
            hint="pass max_size=1 or more",
        )


def check_pool_kwargs(pool_kwargs: dict[str, Any]) -> None:
    """Refuse psycopg_pool options that would let a connection skip the checkin guard."""
    _check_sizes(pool_kwargs)
    if pool_kwargs.get("close_returns"):
        # The guard closes a connection it cannot prove clean; with close_returns,
        # psycopg's close() puts it back in the pool instead, open, for the next tenant.
        raise ConfigurationError(
            "close_returns=True is not supported: the checkin guard discards a connection "
            "by closing it, and close_returns would hand it back to the pool instead",
            hint="leave close_returns unset; `with pool.connection()` returns the connection",
        )


_SCS, _ENCODING = LEXER_PARAMS


def _reported(pg: Any) -> tuple[bytes | None, ...]:
    """What the server reports by itself (``ParameterStatus``; search_path from PostgreSQL 18)
    that decides what the next lease's statements mean: search_path, the session's
    authorization, and how SQL text is read (:data:`LEXER_PARAMS`). A change in any of them
    sends the checkin down the verifying path. (The others, DateStyle, TimeZone...,
    SQL on a lease changes only through statements the classifier flags, or through the
    database's own functions: ``verify="always"`` sees those; each read costs about 1k
    instructions on the clean path.)"""
    ps = pg.parameter_status
    return ps(b"search_path"), ps(b"session_authorization"), ps(_SCS), ps(_ENCODING)


def _reported_lexer(pg: Any) -> tuple[bytes | None, ...]:
    """What the clean path reads when the pool pins role and search_path in every binding
    and refuses a superuser login: :data:`LEXER_PARAMS` only. search_path is set
    transaction-locally by the binding whenever it differs from the login's, and
    session_authorization changes only for a superuser (SET SESSION AUTHORIZATION): a
    change of either left on the connection cannot reach the next lease's statements.
    (The full checkin steps still read and report both.)"""
    ps = pg.parameter_status
    return ps(_SCS), ps(_ENCODING)


def _reported_kinds(base: SessionSnapshot, reported: tuple[bytes | None, ...]) -> set[str]:
    path, auth = reported[:2]
    kinds = set()
    if path is not None and path.decode() != base.search_path:
        kinds.add("search_path")
    if auth is not None and auth.decode() != base.session_user:
        kinds.add("role")
    return kinds


def client_state(conn: Any) -> tuple[object, ...]:
    """Start watching the Python connection object: registrations on ``conn.adapters`` mark
    it (:func:`._internals.watch_adapters`), as its setters and factories do."""
    _internals.watch_adapters(conn, registering)
    return ()


def client_changed(conn: Any) -> bool:
    """What a lease changed on the Python connection object that the next lease would
    inherit: transaction characteristics, preparation, factories and adapters (each marks
    the connection when set: ``_tg_client_changed``), and notice or notify handlers added
    and not removed (a handler left behind would receive the next tenant's notices)."""
    return bool(
        conn._tg_client_changed
        or conn._tg_notice
        or conn._tg_notify
        or _internals.adapters_changed(conn)
    )


def changed_kind(conn: Any) -> str:
    """How the guard reports a connection :func:`client_changed` found changed."""
    changed = conn._tg_client_changed
    if isinstance(changed, str):
        return changed
    if not changed and _internals.adapters_changed(conn):
        return "adapters"
    return "client_state"


def check_lexer(pg: Any) -> tuple[bytes | None, ...]:
    """The connection's :data:`LEXER_PARAMS`; refuses a connection the classifier could misread."""
    scs, encoding = (pg.parameter_status(name) for name in LEXER_PARAMS)
    if scs != b"on":
        raise ConfigurationError(
            f"the connection has standard_conforming_strings = {scs!r}: tenantguard reads "
            "statements as PostgreSQL does with it on (the default since 9.1)",
            hint="remove standard_conforming_strings = off from the server, database or role "
            "settings and the connection options",
        )
    if encoding in _UNSAFE_ENCODINGS:
        raise ConfigurationError(
            f"the connection's client_encoding is {encoding!r}: in it a multibyte character can "
            "end in a quote or backslash byte, and statements could be read two ways",
            hint="use client_encoding UTF8 (psycopg's default)",
        )
    return scs, encoding


def _default_binder(
    signing_key: SigningKey | str | None, setting: str, user_setting: str
) -> Binder:
    """Signed contexts when a key is given (or in ``TENANTGUARD_SIGNING_KEY``), else plain."""
    key = parse_signing_key(signing_key) if signing_key is not None else key_from_env()
    if key is None:
        return SettingBinder(setting, user_setting)
    return SignedBinder(key, setting, user_setting)


_warned_public_path = False


def warn_public_path() -> None:
    """Once per process, when pools run without the fast path: say what it costs."""
    global _warned_public_path
    if _internals.FAST or _warned_public_path:
        return
    _warned_public_path = True
    logger.warning(
        "tenantguard runs on psycopg's public API (%s): more client CPU per statement, and "
        "not behind a transaction-mode PgBouncer, where psycopg's Flush after Sync keeps a "
        "server connection linked to an idle client (see the README); the fast path "
        "supports psycopg %s",
        _internals.REASON,
        ", ".join(f"{a}.{b}.x" for a, b in _internals.TESTED_SERIES),
    )


class PoolCore:
    """What the sync and async pools share: configuration, stats, guard decisions."""

    def __init__(
        self,
        *,
        tenant_kind: TenantKind | None,
        binder: Binder | None,
        setting: str,
        user_setting: str,
        tenant_column: str,
        signing_key: SigningKey | str | None = None,
        check_role: bool,
        verify: Verify | None,
        on_contamination: OnContamination,
        allow_temp: bool = False,
        pin_session: bool = True,
        session_state: SessionState = "refuse",
    ) -> None:
        if session_state not in ("refuse", "reset"):
            raise ConfigurationError(
                f"session_state must be 'refuse' or 'reset', not {session_state!r}",
                hint="'refuse' (the default) works everywhere; 'reset' only on direct "
                "connections, never through a transaction-mode PgBouncer",
            )
        if allow_temp and verify == "suspect":
            raise ConfigurationError(
                "allow_temp=True needs verify='always'",
                hint="a role that can create temporary objects can leave code behind that "
                "the statement classifier cannot see; leave verify unset (it becomes "
                "'always') or revoke TEMPORARY (tenantguard install does)",
            )
        if verify is None:
            verify = "always" if allow_temp else "suspect"
        if verify not in ("suspect", "always"):
            raise ConfigurationError(f"verify must be 'suspect' or 'always', not {verify!r}")
        if on_contamination not in ("reset", "discard"):
            raise ConfigurationError(
                f"on_contamination must be 'reset' or 'discard', not {on_contamination!r}"
            )
        self.binder: Binder = binder or _default_binder(signing_key, setting, user_setting)
        self.setting = getattr(self.binder, "setting", setting)
        self.user_setting = getattr(self.binder, "user_setting", user_setting)
        self.tenant_kind = tenant_kind
        self.kind_given = tenant_kind is not None
        self.allow_temp = allow_temp
        self.pin_session = pin_session
        self.session_state = session_state
        # What a refusing pool still sends: transaction-local effects (not with temp
        # objects allowed: a local search_path can aim CREATE at pg_temp).
        self.sent_effects: frozenset[str] | None = None
        if session_state == "refuse":
            self.sent_effects = frozenset() if allow_temp else LOCAL_ONLY
        self.tenant_column = tenant_column
        self.check_role = check_role
        self.verify = verify
        self.on_contamination = on_contamination
        self.classifier = StatementClassifier()
        self.guard_stats = GuardStats()
        self._count_checkin = self.guard_stats._checkins.__next__  # (count_checkin, in C)
        self.binds: BindCache = {}  # the connections' shared binding cache
        # What the checkin guard's clean path compares with the baseline's report.
        self.clean_reported: Callable[[Any], tuple[bytes | None, ...]] = _reported
        # The login's persistent defaults when the pool's first connection was made.
        self.role_defaults: tuple[str, ...] | None = None
        warn_public_path()

    def new_state(self, owner_of: OwnerOf = threading.get_ident) -> ConnState:
        return ConnState(
            self.binder, self.classifier, self.tenant_kind, self.binds, owner_of, self.sent_effects
        )

    def role_query(self) -> tuple[str, dict[str, Any]]:
        # With the role pinned to the login, statements run as session_user: check that.
        return ROLE_CHECK_QUERY, role_params(
            None,
            self.tenant_column,
            self.setting,
            self.user_setting,
            as_session_user=self.pin_session,
        )

    def raise_if_unsafe(self, row: tuple[Any, ...] | None) -> None:
        if row is None:
            return
        report = role_report(row)
        if not report.safe:
            raise UnsafeRoleError(report.role, report.problems, report.fixes)
        code = code_report(row)
        problems = [
            (p, f)
            for k, p, f in zip(code.kinds, code.problems, code.fixes, strict=True)
            if not (k == "temp" and self.allow_temp)
        ]
        if problems:
            raise UnsafeRoleError(
                code.role,
                [p for p, _ in problems],
                [f for _, f in problems],
                summary="can create code that would run in other tenants' requests",
            )

    def set_session_defaults(self, row: tuple[Any, ...] | None) -> None:
        """Pin the login's role and search_path in every binding (``pin_session``)."""
        if row is None or not self.pin_session or not isinstance(self.binder, SettingBinder):
            return
        self.binder.pins = str(row[0])
        self.binds.clear()
        if self.check_role:  # no superuser login: see _reported_lexer
            self.clean_reported = _reported_lexer

    def infer_kind(self, rows: list[tuple[Any, ...]]) -> None:
        """The tenant kind from the protected tables' tenant column, when not given.

        Without a kind every id would be sent as text and cast by the policy, and the
        server's casts accept many spellings of one number (``'+2'``, ``'002'``, and
        from PostgreSQL 16 ``'0x2'``, ``'0b10'``, ``'0_2'``): they would all reach tenant 2.
        """
        if self.kind_given:
            return
        kinds = {kind_for_type(str(r[0])) for r in rows}
        kinds.discard(None)
        if len(kinds) > 1:
            raise ConfigurationError(
                f"the protected tables' {self.tenant_column} columns have different types "
                f"({', '.join(str(r[0]) for r in rows)})",
                hint="pass tenant_kind= ('int', 'bigint', 'uuid' or 'text') to the pool",
            )
        if kinds:
            self.tenant_kind = kinds.pop()
            self.binds.clear()

    def check_helper(self, row: tuple[Any, ...] | None) -> None:
        """The database helper must read the setting this pool binds."""
        if row is None or not isinstance(self.binder, SettingBinder):
            return
        db_setting, db_user_setting = row
        if (db_setting, db_user_setting) != (self.setting, self.user_setting):
            raise ConfigurationError(
                f"the pool binds {self.setting}/{self.user_setting} but the database's "
                f"tenantguard helpers read {db_setting}/{db_user_setting}",
                hint=f"create the pool with setting={db_setting!r}, "
                f"user_setting={db_user_setting!r} (or re-run install with --setting)",
            )

    def exit_status_kind(self, status: int, autocommit: bool) -> str | None:
        """What a transaction left open at the end of a lease means."""
        if status == INERROR:
            return "aborted_transaction"
        if status == INTRANS and autocommit:
            # In autocommit mode only an explicit BEGIN (sent as SQL) leaves this.
            return "open_transaction"
        return None

    def exit_action(
        self, conn: TenantConnection[Any] | AsyncTenantConnection[Any]
    ) -> Literal["commit", "rollback"] | None:
        """How a lease that ended without error closes its transaction, if one is open.

        A transaction left open in autocommit mode, or aborted, is rolled back and noted
        as a session-state effect (the guard then verifies the connection); a
        non-autocommit pool's transaction is committed.
        """
        status = conn.pgconn.transaction_status
        if status == IDLE:
            return None
        kind = self.exit_status_kind(status, conn.autocommit)
        if kind is not None:
            assert conn._tg_state is not None
            conn._tg_state.effects.add(kind)
            return "rollback"
        return "commit" if status == INTRANS else None

    def client_side_kinds(
        self, conn: TenantConnection[Any] | AsyncTenantConnection[Any]
    ) -> set[str]:
        st = conn._tg_state
        assert st is not None
        kinds = set(st.effects)
        if st.baseline is not None:
            kinds |= _reported_kinds(st.baseline, _reported(conn.pgconn))
        return kinds

    def set_baseline(
        self, conn: TenantConnection[Any] | AsyncTenantConnection[Any], st: ConnState, row: Any
    ) -> None:
        """The connection's clean state, from STATE_QUERY, and what the server reports."""
        st.baseline = snapshot(row)
        self.check_role_defaults(st.baseline.role_defaults)
        st.lexer = check_lexer(conn.pgconn)
        reported = _reported(conn.pgconn)
        # Kept only when it agrees with the baseline; otherwise every checkin verifies.
        st.baseline_reported = (
            None if _reported_kinds(st.baseline, reported) else self.clean_reported(conn.pgconn)
        )

    def check_role_defaults(self, now: tuple[str, ...] | None) -> None:
        """A new connection must start with the defaults the pool's first one had.

        SQL on a lease can run ``ALTER ROLE CURRENT_USER SET ...`` from inside a function
        (plain statements are refused before sending): the default then reaches every new
        connection, for every tenant, and nothing on the connection can undo it.
        """
        if self.role_defaults is None:
            self.role_defaults = now
            return
        if now == self.role_defaults:
            return
        before, after = set(self.role_defaults), set(now or ())
        changed = sorted(after - before) + [f"-{d}" for d in sorted(before - after)]
        raise ConfigurationError(
            "the login's persistent defaults changed since the pool opened "
            f"({', '.join(changed)}); new connections are refused",
            hint="if an administrator changed them on purpose, reopen the pool; otherwise "
            "reset them as an administrator (ALTER ROLE <login> RESET <setting>) and look for "
            "the code that ran ALTER ROLE on a tenant lease",
        )

    def checkout_refused(
        self, conn: TenantConnection[Any] | AsyncTenantConnection[Any], stale: bool = False
    ) -> bool:
        """No I/O: True when a connection psycopg_pool hands out must not be leased.

        Closed, or changed while it waited in the pool (through a reference kept past its
        lease, or ``pool.pool`` used directly): Python-side state, a transaction or a
        pipeline left open. The lease closes it and asks psycopg_pool for another.
        """
        if conn.closed:
            return True
        st = conn._tg_state
        if st is None or st.client is None:
            return False
        replaced = attributes_replaced(conn)
        if (
            stale
            or replaced
            or client_changed(conn)
            or conn.pgconn.transaction_status != IDLE
            or conn.pgconn.pipeline_status != PIPELINE_OFF
            or conn.lock.locked()
        ):
            if stale:  # handed back to psycopg_pool while its lease went on
                kind = "lease_not_returned"
            elif replaced:
                kind = "attribute_replaced"
            elif conn.lock.locked():
                kind = "lock_held"
            else:
                kind = changed_kind(conn)
            self.guard_stats.record(None, {kind}, "discard")
            logger.warning(
                "a pooled connection changed while it waited in the pool (%s: a reference "
                "kept past its lease, or pool.pool used directly?); discarding it before the "
                "next lease",
                kind,
            )
            return True
        return False

    def checkin_clean(self, conn: TenantConnection[Any] | AsyncTenantConnection[Any]) -> bool:
        """The guard's clean path, no I/O: True when it is done (lease ended, counted).

        False when the connection needs :meth:`checkin_steps`: a statement that may
        have changed session state, ``verify="always"``, or a parameter the server
        reported changed. The decision is the one :meth:`checkin_steps` would take.
        """
        st = conn._tg_state
        if st is None:
            return True
        pg = conn.pgconn
        if pg.status:  # not OK: closed (psycopg_pool discards it), or the full steps
            return conn.closed
        if st.effects or self.verify == "always":
            return False
        # (client_changed inlined, without the adapters: compared at checkout)
        if st.client is not None and (
            conn._tg_client_changed or conn._tg_notice or conn._tg_notify
        ):
            return False
        if st.baseline is not None:
            if self.clean_reported(pg) != st.baseline_reported:
                return False  # (the same bytes as at the baseline, which matched it: clean)
            st.lexer_ok = True  # (LEXER_PARAMS among them: see ConnState.screen)
        self._count_checkin()
        st.end_lease()
        return True

    def checkin_steps(
        self, conn: TenantConnection[Any] | AsyncTenantConnection[Any]
    ) -> Generator[Step, Any, None]:
        """The checkin guard's logic, without I/O: yields the statements to run.

        Steps are ``("fetch", sql, params)`` (send back the first row), ``("exec", sql,
        None)`` and ``("close", None, None)``. The sync and async pools drive it; an
        I/O error is thrown back in, so a connection that cannot be proven clean is
        always closed (psycopg_pool then replaces it) and never handed to the next tenant.
        """
        st = conn._tg_state
        if st is None or conn.closed:
            return
        self.guard_stats.count_checkin()
        lease = st.lease
        if st.client is not None and client_changed(conn):
            # Python-side state the next lease would inherit: a fresh connection is simpler
            # and surer than undoing it attribute by attribute (handlers included).
            self.report(lease, {changed_kind(conn)}, "discard")
            try:
                yield ("close", None, None)
            finally:
                st.end_lease()
            return
        kinds = self.client_side_kinds(conn)
        # A reported parameter that changed (any that _reported reads) is a reason to verify even
        # when it names no kind itself: the snapshot's settings digest then says what.
        reported_changed = (
            st.baseline is not None and self.clean_reported(conn.pgconn) != st.baseline_reported
        )
        try:
            if kinds or reported_changed or self.verify == "always":
                assert st.baseline is not None
                self.guard_stats.count_verified()
                state = (self.setting, self.user_setting)
                kinds |= changed_kinds(st.baseline, snapshot((yield ("fetch", STATE_QUERY, state))))
                if kinds:
                    self.report(lease, kinds, self.on_contamination)
                    if self.on_contamination == "discard":
                        yield ("close", None, None)
                        return
                    # psycopg sees its own DISCARD ALL and forgets its prepared statements;
                    # tenantguard's prepared binding is gone too.
                    yield ("exec", "DISCARD ALL", None)
                    conn._tg_binding_prepared = False
                    left = changed_kinds(
                        st.baseline, snapshot((yield ("fetch", STATE_QUERY, state)))
                    )
                    if left:
                        raise ContaminatedConnection(lease and lease.tenant.value, sorted(left))
        except Exception as exc:
            logger.warning("checkin guard closed a connection: %s", exc)
            who = None if lease is None else str(lease.tenant)
            self.guard_stats.record(who, {"unresettable"}, "discard")
            yield ("close", None, None)
        finally:
            st.end_lease()

    def report(self, lease: TenantContext | None, kinds: set[str], action: str) -> None:
        who = None if lease is None else str(lease.tenant)
        self.guard_stats.record(who, kinds, action)
        logger.warning(
            "tenant %s returned a pooled connection carrying session state (%s); %s",
            who,
            ", ".join(sorted(kinds)),
            "resetting it with DISCARD ALL" if action == "reset" else "discarding it",
        )


class LeaseBase:
    """What the sync and async leases share: their fields and the ``tenant_id=`` scope."""

    __slots__ = ("conn", "pool", "tenant_cm", "tenant_id", "timeout")

    def __init__(self, pool: Any, timeout: float | None, tenant_id: object | None) -> None:
        self.pool = pool
        self.timeout = timeout
        self.tenant_id = tenant_id
        self.tenant_cm: Any = None
        self.conn: Any = None

    def _enter_tenant(self) -> None:
        if self.tenant_id is not None:
            kind = self.pool._core.tenant_kind  # errors name the pool's tenant kind
            tid = self.tenant_id if kind is None else parse_tenant_id(self.tenant_id, kind)
            self.tenant_cm = tenant(tid)
            self.tenant_cm.__enter__()

    def _exit_tenant(self) -> None:
        if self.tenant_cm is not None:
            self.tenant_cm.__exit__(None, None, None)
            self.tenant_cm = None
