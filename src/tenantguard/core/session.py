"""Per-connection binding state, shared by the sync and async drivers (no I/O).

A pooled connection is *leased* to one tenant context at checkout. Before each
statement the driver asks :meth:`ConnState.bind_needed`: a statement that starts a
transaction gets the binder's statement in front of it, in the same round trip;
a statement inside an already-bound transaction goes alone. Every statement is
also classified, so the checkin guard knows whether session state may have changed.
"""

from __future__ import annotations

from typing import LiteralString

from psycopg import sql
from psycopg.pq import TransactionStatus

from tenantguard.core.binding import Binder
from tenantguard.core.classify import StatementClassifier
from tenantguard.core.context import TenantContext, _current
from tenantguard.core.guard import SessionSnapshot
from tenantguard.core.ids import TenantKind, parse_tenant_id
from tenantguard.errors import NoTenantContext, TenantContextChanged

__all__ = ["ConnState", "normalize_context"]

IDLE = TransactionStatus.IDLE


def normalize_context(ctx: TenantContext, kind: TenantKind | None) -> TenantContext:
    """Re-validate *ctx* for a pool whose tenant column has *kind* (before any I/O)."""
    if kind is None or ctx.tenant.kind == kind:
        return ctx
    return TenantContext(parse_tenant_id(ctx.tenant.value, kind), ctx.user)


class ConnState:
    """What tenantguard knows about one pooled connection."""

    __slots__ = (
        "baseline",
        "bind_cache",
        "binder",
        "bound",
        "classifier",
        "effects",
        "kind",
        "lease",
        "lease_bind",
        "stable_binder",
    )

    def __init__(
        self, binder: Binder, classifier: StatementClassifier, kind: TenantKind | None
    ) -> None:
        self.binder = binder
        self.stable_binder = bool(getattr(binder, "stable", False))
        self.classifier = classifier
        self.kind = kind
        self.lease: TenantContext | None = None  # the context the caller checked out with
        self.lease_bind: TenantContext | None = None  # the same, validated for this pool
        self.bound = False  # the open transaction carries our binding
        self.effects: set[str] = set()  # session-state effects seen since checkout
        self.baseline: SessionSnapshot | None = None
        # (context, binding, encoded values) for the current lease: computed once.
        self.bind_cache: (
            tuple[TenantContext, tuple[LiteralString, tuple[str, ...]], list[bytes] | None] | None
        ) = None

    # -- lease -----------------------------------------------------------------
    def start_lease(self, ctx: TenantContext, bind_ctx: TenantContext | None = None) -> None:
        self.lease = ctx
        self.lease_bind = bind_ctx if bind_ctx is not None else normalize_context(ctx, self.kind)
        self.bound = False
        self.bind_cache = None
        self.effects.clear()

    def end_lease(self) -> TenantContext | None:
        ctx = self.lease
        self.lease = self.lease_bind = self.bind_cache = None
        self.bound = False
        self.effects.clear()
        return ctx

    # -- per statement ---------------------------------------------------------
    def context_for(self, action: str) -> TenantContext:
        """The (validated) context to bind now; raises before any I/O when wrong."""
        ctx = _current.get()
        lease = self.lease
        if ctx is lease and ctx is not None:  # the common case
            return self.lease_bind  # type: ignore[return-value]
        if ctx is None:
            raise NoTenantContext(action)
        if lease is None:
            return normalize_context(ctx, self.kind)
        if ctx != lease:
            raise TenantContextChanged(lease.tenant.value, ctx.tenant.value)
        assert self.lease_bind is not None
        return self.lease_bind

    def bind_needed(
        self, status: int, in_pipeline: bool, action: str = "a query"
    ) -> tuple[LiteralString, tuple[str, ...]] | None:
        """The binding statement to send before the next one, or None if already bound."""
        ctx = self.context_for(action)
        if status == IDLE:
            self.bound = False
        if self.bound and not in_pipeline:
            return None
        return self.binder.bind_query(ctx)

    def autocommit_bind(self) -> tuple[tuple[LiteralString, tuple[str, ...]], list[bytes] | None]:
        """The binding for an autocommit statement outside a transaction (the hot path).

        Same checks as :meth:`bind_needed` (fail-closed, the lease's tenant); also the
        values pre-encoded, kept for the lease (``None`` when one is not ASCII: the
        driver encodes those in the connection's encoding).
        """
        ctx = self.context_for("a query")
        self.bound = False
        cached = self.bind_cache
        if cached is not None and cached[0] is ctx:
            return cached[1], cached[2]
        bind = self.binder.bind_query(ctx)
        values = bind[1]
        encoded = [v.encode() for v in values] if "".join(values).isascii() else None
        if self.stable_binder:  # a binder whose statement depends on the context only
            self.bind_cache = (ctx, bind, encoded)
        return bind, encoded

    def after_statement(self, status: int) -> None:
        self.bound = status != IDLE

    def note(self, query: object) -> None:
        """Classify *query* and remember any session-state effect it may have."""
        if isinstance(query, str | bytes):
            effects = self.classifier.effects(query)
        elif isinstance(query, sql.Composable):
            effects = self.classifier.effects(query.as_string())
        else:
            effects = frozenset({"unparsed"})
        if effects:
            self.effects |= effects

    def note_sql(self, query: bytes) -> None:
        """Classify the converted SQL (the bytes sent to the server), as :meth:`note`."""
        effects = self.classifier.effects(query)
        if effects:
            self.effects |= effects
