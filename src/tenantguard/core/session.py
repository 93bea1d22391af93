"""Per-connection binding state, shared by the sync and async drivers (no I/O).

A pooled connection is *leased* to one tenant context at checkout. Before each
statement the driver asks :meth:`ConnState.bind_needed`: a statement that starts a
transaction gets the binder's statement in front of it, in the same round trip;
a statement inside an already-bound transaction goes alone. Every statement is
also classified, so the checkin guard knows whether session state may have changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, LiteralString

from psycopg import sql
from psycopg.pq import TransactionStatus

from tenantguard.core._bounded import remember
from tenantguard.core.binding import Binder
from tenantguard.core.classify import StatementClassifier, refuse_persistent
from tenantguard.core.context import TenantContext, _current
from tenantguard.core.guard import SessionSnapshot
from tenantguard.core.ids import TenantKind, parse_tenant_id
from tenantguard.errors import (
    LeaseNotHeld,
    NoTenantContext,
    SessionStateRefused,
    TenantContextChanged,
    UnsupportedOperation,
)

__all__ = ["LEXER_PARAMS", "ConnState", "lexer_neutral", "normalize_context"]

#: The reported parameters that decide how the server splits SQL text into tokens. The
#: classifier reads SQL as PostgreSQL does with ``standard_conforming_strings = on`` in
#: the connection's encoding; a lease that changes either (``set_config`` inside a
#: ``query_to_xml`` text, say) could make one statement mean two different things.
LEXER_PARAMS = (b"standard_conforming_strings", b"client_encoding")


#: Who holds a lease: the thread (sync pools) or the asyncio task (async pools).
OwnerOf = Callable[[], object]
_NO_OWNER = object()  # between leases: equal to no thread or task

IDLE = TransactionStatus.IDLE

#: Bindings kept per pool (tenants x users); past it the cache starts over. Sized for the
#: tenants active at once: a cache that starts over before it holds them all misses on most
#: requests (10,000 tenants in random order with 4,096 entries: about 60%; measured, each
#: miss builds and encodes the binding again).
BIND_CACHE_SIZE = 16384

BindCache = dict[
    tuple[object, type, str, str | None],
    tuple[tuple[LiteralString, tuple[str, ...]], list[bytes] | None],
]


def lexer_neutral(text: str | bytes) -> bool:
    """*text* is read the same whatever :data:`LEXER_PARAMS` are: ASCII (every client
    encoding PostgreSQL accepts reads ASCII as ASCII) and no backslash (the only character
    ``standard_conforming_strings`` changes the meaning of)."""
    return text.isascii() and ("\\" not in text if isinstance(text, str) else b"\\" not in text)


def refuse_pipelined_text() -> None:
    """In a pipeline the server reports a changed parameter only at the pipeline's Sync:
    what the connection reports may be older than what an earlier statement of the same
    pipeline set, so only SQL text that every setting reads alike is sent there."""
    raise UnsupportedOperation(
        "this statement is queued in a pipeline and its SQL text has a backslash or a "
        "non-ASCII character: the server reports standard_conforming_strings and "
        "client_encoding only at the pipeline's Sync, so tenantguard cannot know how an "
        "earlier statement of the pipeline left them to read it; this statement was not sent",
        hint="pass such values as parameters (%s), or run the statement outside conn.pipeline() "
        "(executemany pipelines every parameter set after the first)",
    )


def normalize_context(ctx: TenantContext, kind: TenantKind | None) -> TenantContext:
    """Re-validate *ctx* for a pool whose tenant column has *kind* (before any I/O)."""
    if kind is None or ctx.tenant.kind == kind:
        return ctx
    return TenantContext(parse_tenant_id(ctx.tenant.value, kind), ctx.user)


class ConnState:
    """What tenantguard knows about one pooled connection."""

    __slots__ = (
        "baseline",
        "baseline_reported",
        "binder",
        "binds",
        "bound",
        "classifier",
        "client",
        "effects",
        "kind",
        "lease",
        "lease_bind",
        "lexer",
        "lexer_ok",
        "owner",
        "owner_of",
        "refuse",
        "slow_path",
        "stable_binder",
    )

    def __init__(
        self,
        binder: Binder,
        classifier: StatementClassifier,
        kind: TenantKind | None,
        binds: BindCache | None = None,
        owner_of: OwnerOf = threading.get_ident,
        refuse: frozenset[str] | None = None,
    ) -> None:
        self.binder = binder
        # session_state="refuse": the only classifier effects sent (the rest is refused
        # before sending); None (session_state="reset"): everything is sent, and the
        # checkin guard verifies and resets.
        self.refuse = refuse
        # A lease belongs to the thread or task that took it; a reference kept past the
        # lease, or handed to another thread, is refused before any I/O.
        self.owner_of = owner_of
        self.owner: object = _NO_OWNER
        self.stable_binder = bool(getattr(binder, "stable", False))
        self.classifier = classifier
        self.kind = kind
        self.lease: TenantContext | None = None  # the context the caller checked out with
        self.lease_bind: TenantContext | None = None  # the same, validated for this pool
        self.bound = False  # the open transaction carries our binding
        self.effects: set[str] = set()  # session-state effects seen since checkout
        # A statement of this lease ran outside the autocommit fast path (in a transaction,
        # a pipeline): settings local to it may have differed from the session's.
        self.slow_path = False
        self.baseline: SessionSnapshot | None = None
        # What the server reported (ParameterStatus) when the baseline was taken, raw:
        # the checkin guard's clean path compares these bytes without decoding them.
        self.baseline_reported: tuple[bytes | None, ...] | None = None
        # The driver connection's own settings (autocommit, read_only, factories, handlers
        # added during a lease...) when it joined the pool; None: not tracked.
        self.client: tuple[object, ...] | None = None
        # LEXER_PARAMS as the server reported them when the baseline was taken.
        self.lexer: tuple[bytes | None, ...] | None = None
        # Nothing has been sent since the checkin guard found LEXER_PARAMS as in ``lexer``
        # (set by its clean path, cleared by the first statement screened or sent after it).
        self.lexer_ok = False
        # (tenant value, its type, kind, user) -> (binding, encoded values), shared by a
        # pool's connections: a stable binder's statement depends on the context only.
        self.binds: BindCache = {} if binds is None else binds

    # -- lease -----------------------------------------------------------------
    def start_lease(self, ctx: TenantContext, bind_ctx: TenantContext | None = None) -> None:
        self.lease = ctx
        self.lease_bind = bind_ctx if bind_ctx is not None else normalize_context(ctx, self.kind)
        self.owner = self.owner_of()
        self.bound = self.slow_path = False
        if self.effects:  # (end_lease clears them: only a lease that did not end left any)
            self.effects.clear()

    def end_lease(self) -> TenantContext | None:
        ctx = self.lease
        self.owner = _NO_OWNER
        self.lease = self.lease_bind = None
        self.bound = self.slow_path = False
        if self.effects:
            self.effects.clear()
        return ctx

    # -- per statement ---------------------------------------------------------
    def check_owner(self) -> None:
        """Raise :class:`LeaseNotHeld` unless the caller holds this connection's lease."""
        if self.owner_of() != self.owner:
            if self.lease is None:
                raise LeaseNotHeld("its lease has ended and it went back to the pool")
            raise LeaseNotHeld("it is leased to another thread or task")

    def context_for(self, action: str) -> TenantContext:
        """The (validated) context to bind now; raises before any I/O when wrong."""
        ctx = _current.get()
        lease = self.lease
        if ctx is lease and ctx is not None:  # the common case
            if self.owner_of() != self.owner:
                self.check_owner()
            return self.lease_bind  # type: ignore[return-value]
        self.check_owner()
        if ctx is None:
            raise NoTenantContext(action)
        assert lease is not None
        if ctx != lease:
            raise TenantContextChanged(lease.tenant.value, ctx.tenant.value)
        assert self.lease_bind is not None
        return self.lease_bind

    def bind_needed(
        self, status: int, in_pipeline: bool, action: str = "a query"
    ) -> tuple[LiteralString, tuple[str, ...]] | None:
        """The binding statement to send before the next one, or None if already bound."""
        ctx = self.context_for(action)
        self.slow_path = True
        if status == IDLE:
            self.bound = False
        if self.bound and not in_pipeline:
            return None
        return self.binder.bind_query(ctx)

    def autocommit_bind(self) -> tuple[tuple[LiteralString, tuple[str, ...]], list[bytes] | None]:
        """The binding for an autocommit statement outside a transaction (the hot path).

        Same checks as :meth:`bind_needed` (fail-closed, the lease's tenant); also the
        values pre-encoded, kept in the pool's shared cache (``None`` when one is not
        ASCII: the driver encodes those in the connection's encoding).
        """
        ctx: TenantContext
        now = _current.get()
        if now is not self.lease or now is None or self.owner_of() != self.owner:
            ctx = self.context_for("a query")  # raises, or the same checks passed
        else:  # the common case (context_for's, inlined)
            ctx = self.lease_bind  # type: ignore[assignment]  # (set with the lease)
        self.bound = False
        if not self.stable_binder:  # e.g. a binder that signs each transaction
            return self._encoded_bind(ctx)
        tid = ctx.tenant
        value = tid.value
        # The value's type and the kind too: equal in Python is not the same binding
        # (TenantId(True, "bigint") == TenantId(1, "bigint"), but it binds "True").
        key = (value, type(value), tid.kind, ctx.user)
        hit = self.binds.get(key)
        if hit is None:
            hit = remember(self.binds, key, self._encoded_bind(ctx), BIND_CACHE_SIZE)
        return hit

    def _encoded_bind(
        self, ctx: TenantContext
    ) -> tuple[tuple[LiteralString, tuple[str, ...]], list[bytes] | None]:
        bind = self.binder.bind_query(ctx)
        values = bind[1]
        encoded = [v.encode() for v in values] if "".join(values).isascii() else None
        return bind, encoded

    def after_statement(self, status: int) -> None:
        self.bound = status != IDLE

    def note(self, query: object, pgconn: Any, params: bool = False) -> None:
        """Classify *query* as the server will receive it and remember any session-state
        effect it may have (*params*: it is sent with parameters, so psycopg replaces its
        placeholders first).

        Raises before sending when the statement is refused (:meth:`screen`).
        """
        text: str | bytes | None = None
        if isinstance(query, str | bytes):
            effects = self.classifier.effects(text := query, params)
        elif isinstance(query, sql.Composable):
            effects = self.classifier.effects(text := query.as_string(), params)
        else:
            effects = frozenset({"unparsed"})
        if pgconn.pipeline_status and text is not None and not lexer_neutral(text):
            refuse_pipelined_text()
        self.screen(effects, pgconn)

    def screen(self, effects: frozenset[str], pgconn: Any) -> None:
        """Check a classified statement before it is sent: raise, or remember its effects.

        The classification only holds while the server reads SQL as the classifier does
        (:data:`LEXER_PARAMS` unchanged since the connection's baseline).
        """
        lexer = self.lexer
        if lexer is None:
            pass
        elif self.lexer_ok:
            # The lease's first statement: libpq's reported values are the ones the checkin
            # guard compared at the end of the last lease, nothing sent since (one read of
            # each per statement after this one).
            self.lexer_ok = False
        elif (
            pgconn.parameter_status(LEXER_PARAMS[0]) != lexer[0]
            or pgconn.parameter_status(LEXER_PARAMS[1]) != lexer[1]
        ):
            self.effects.add("lexer")
            now = [pgconn.parameter_status(p) for p in LEXER_PARAMS]
            raise UnsupportedOperation(
                "standard_conforming_strings or client_encoding changed during this lease "
                f"(now {now[0]!r}, {now[1]!r}; were {lexer[0]!r}, {lexer[1]!r}): the server "
                "would no longer read statements the way tenantguard checks them; nothing was "
                "sent, and the connection is reset when the lease ends",
                hint="do not change standard_conforming_strings or client_encoding on a pooled "
                "connection; end this lease and take a new one",
            )
        if not effects:
            return
        refuse_persistent(effects)
        allowed = self.refuse
        if allowed is not None and not effects <= allowed:
            raise SessionStateRefused(effects - allowed)
        self.effects |= effects
