"""What CredentialPool and AsyncCredentialPool share: sources, slots, the pool's bookkeeping.

:class:`CredentialPoolBase` holds a credential pool's configuration and state (idle
connections per tenant, leased ones, the count of open connections, each tenant's
generation and cached credential) and makes every decision on it: which connection a
checkout gets or which place it reserves, which idle connections are stale, what a revoke
or a close takes away, whether a returned connection is kept. It does no I/O and takes no
lock: the pools call it while holding their own (a ``threading.Condition`` or an
``asyncio.Condition``). The pools themselves are in :mod:`._credential_pool_async` (the
source) and :mod:`._credential_pool` (generated from it by ``tools/async_to_sync.py``).

The credential sources are here too, for both pools: :class:`AdminCredentialSource` does
blocking I/O (one short administrator connection per call), which
:class:`~tenantguard.AsyncCredentialPool` runs in a worker thread (:func:`call_source`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeAlias, TypeVar, runtime_checkable

import psycopg
from psycopg_pool import PoolTimeout

from tenantguard.admin.credentials import Credential, issue_credential, revoke_credentials
from tenantguard.core.context import require_tenant
from tenantguard.core.ids import TenantKind, parse_tenant_id
from tenantguard.errors import UsageError

__all__ = [
    "AdminCredentialSource",
    "AnySource",
    "AsyncCredentialSource",
    "CredentialPoolBase",
    "CredentialSource",
    "Slot",
    "call_source",
]

ConnT = TypeVar("ConnT")


@runtime_checkable
class CredentialSource(Protocol):
    """Issues a tenant's credential: ``issue(tenant) -> Credential`` (``revoke`` optional)."""

    def issue(self, tenant: str) -> Credential: ...


@runtime_checkable
class AsyncCredentialSource(Protocol):
    """An asyncio source: ``async def issue(tenant) -> Credential`` (``revoke`` optional)."""

    async def issue(self, tenant: str) -> Credential: ...


#: What :class:`~tenantguard.AsyncCredentialPool` takes (the sync pool: a CredentialSource).
AnySource: TypeAlias = CredentialSource | AsyncCredentialSource


async def call_source(method: Callable[[str], Any], tenant: str) -> Any:
    """Call a source's ``issue`` or ``revoke`` from asyncio without blocking the loop.

    A coroutine function is awaited; anything else runs in a worker thread
    (``asyncio.to_thread``), and an awaitable it returns is awaited.
    """
    if inspect.iscoroutinefunction(method):
        return await method(tenant)
    result = await asyncio.to_thread(method, tenant)
    if inspect.isawaitable(result):
        result = await result
    return result


class AdminCredentialSource:
    """Issues (and revokes) credentials with an administrator DSN, one short connection each.

    Its calls block (psycopg's sync API); the asyncio pool runs them in a worker thread.
    """

    def __init__(
        self,
        admin_dsn: str,
        *,
        ttl: str | int | float | timedelta = "15m",
        slot: str = "default",
        schema: str = "tenantguard",
        role_prefix: str | None = None,
    ) -> None:
        self._dsn = admin_dsn
        self._ttl = ttl
        self._slot = slot
        self._schema = schema
        self._prefix = role_prefix

    def issue(self, tenant: str) -> Credential:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            return issue_credential(
                conn,
                tenant,
                ttl=self._ttl,
                slot=self._slot,
                schema=self._schema,
                role_prefix=self._prefix,
            )

    def revoke(self, tenant: str) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            revoke_credentials(conn, tenant, schema=self._schema)


@dataclass(eq=False)
class Slot(Generic[ConnT]):
    """One pooled connection and what the pool knows of it."""

    conn: ConnT
    tenant: str
    generation: int
    expires: float  # monotonic time at which the credential ends
    last_used: float


class CredentialPoolBase(Generic[ConnT]):
    """Configuration, state and decisions of a credential pool; no I/O, no lock.

    Every ``_`` method that reads or changes the state is called with the pool's lock
    held; what it hands back to close (stale or evicted slots) is closed after the lock
    is released.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int,
        max_idle: float,
        timeout: float,
        renew_margin: float,
        tenant_kind: TenantKind | None,
        kwargs: dict[str, Any] | None,
    ) -> None:
        if max_size < 1:
            raise UsageError("max_size must be at least 1")
        if kwargs and ("password" in kwargs or "user" in kwargs):
            raise UsageError(
                f"{type(self).__name__} sets user and password from each tenant's credential",
                hint="remove user= and password= from kwargs",
            )
        self.conninfo = conninfo
        self.max_size = max_size
        self.max_idle = max_idle
        self.timeout = timeout
        self.renew_margin = renew_margin
        self.tenant_kind = tenant_kind
        self.kwargs: dict[str, Any] = {"autocommit": True, **(kwargs or {})}
        self._idle: dict[str, deque[Slot[ConnT]]] = {}
        self._leased: dict[int, Slot[ConnT]] = {}
        self._open = 0
        self._generation: dict[str, int] = {}
        self._credentials: dict[str, tuple[Credential, float]] = {}
        self._closed = False

    def _key(self, tenant: object | None) -> str:
        if tenant is None:
            return str(require_tenant(f"{type(self).__name__}.connection()").tenant)
        return str(parse_tenant_id(tenant, self.tenant_kind))

    def _stats(self) -> dict[str, int]:
        return {
            "open": self._open,
            "leased": len(self._leased),
            "idle": sum(len(q) for q in self._idle.values()),
            "tenants": sum(1 for q in self._idle.values() if q),
        }

    def _take_stale(self, now: float) -> list[Slot[ConnT]]:
        """Take idle slots unused for ``max_idle`` or within ``renew_margin`` of their end."""
        doomed: list[Slot[ConnT]] = []
        for key, q in list(self._idle.items()):
            keep = deque(
                s
                for s in q
                if now - s.last_used < self.max_idle and s.expires - now > self.renew_margin
            )
            doomed.extend(s for s in q if s not in keep)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        self._open -= len(doomed)
        return doomed

    def _lru_idle(self) -> Slot[ConnT] | None:
        best: tuple[float, str] | None = None
        for key, q in self._idle.items():
            if q and (best is None or q[0].last_used < best[0]):
                best = (q[0].last_used, key)
        if best is None:
            return None
        q = self._idle[best[1]]
        slot = q.popleft()
        if not q:
            del self._idle[best[1]]
        return slot

    def _checkout(
        self, key: str, now: float, victims: list[Slot[ConnT]]
    ) -> Slot[ConnT] | int | None:
        """One pass of a checkout for tenant *key*; slots to close are added to *victims*.

        Returns an idle slot of *key* (now leased), or the tenant's generation when a
        place for a new connection was reserved (a free one, or the least recently used
        idle connection of another tenant, added to *victims*), or ``None``: wait.
        """
        if self._closed:
            raise UsageError(f"the {type(self).__name__} is closed")
        victims.extend(self._take_stale(now))
        q = self._idle.get(key)
        if q:
            slot = q.pop()  # most recently used: warm, least likely to be stale
            if not q:
                del self._idle[key]
            slot.last_used = now
            self._leased[id(slot)] = slot
            return slot
        if self._open < self.max_size:
            self._open += 1
            return self._generation.get(key, 0)
        lru = self._lru_idle()
        if lru is not None:  # make room: close another tenant's idle connection
            victims.append(lru)
            return self._generation.get(key, 0)
        return None

    def _timed_out(self) -> PoolTimeout:
        return PoolTimeout(
            f"no connection free within {self.timeout}s ({self.max_size} open, all leased)"
        )

    def _cached_credential(self, key: str, now: float) -> tuple[Credential, float] | None:
        cached = self._credentials.get(key)
        if cached is not None and cached[1] - now > self.renew_margin:
            return cached
        return None

    def _credential_entry(self, key: str, cred: Credential, now: float) -> tuple[Credential, float]:
        """Check a credential the source issued for *key*; pair it with its monotonic end."""
        if cred.tenant != key:
            raise UsageError(
                f"the credential source returned a login for tenant {cred.tenant!r}, not {key!r}"
            )
        left = (cred.valid_until - datetime.now(UTC)).total_seconds()
        return cred, now + left

    def _keep_credential(self, key: str, entry: tuple[Credential, float], generation: int) -> None:
        """Cache a credential, unless the tenant was revoked since the checkout began."""
        if generation == self._generation.get(key, 0):
            self._credentials[key] = entry

    def _revoked(self, key: str) -> tuple[list[Slot[ConnT]], int]:
        """Forget *key*'s credential and idle slots (returned, to close); count its leased ones."""
        self._generation[key] = self._generation.get(key, 0) + 1
        self._credentials.pop(key, None)
        idle = list(self._idle.pop(key, ()))
        self._open -= len(idle)
        leased = sum(1 for s in self._leased.values() if s.tenant == key)
        return idle, leased

    def _closing(self) -> list[Slot[ConnT]]:
        """Mark the pool closed; take every idle slot (to close)."""
        self._closed = True
        idle = [s for q in self._idle.values() for s in q]
        self._idle.clear()
        self._open -= len(idle)
        return idle

    def _lease(self, slot: Slot[ConnT]) -> None:
        self._leased[id(slot)] = slot

    def _unreserve(self) -> None:
        """A reserved place whose connection could not be made."""
        self._open -= 1

    def _checkin(self, slot: Slot[ConnT], keep: bool, now: float) -> bool:
        """A leased slot comes back; whether it stays (idle) or goes (to close)."""
        self._leased.pop(id(slot), None)
        keep = (
            keep
            and not self._closed
            and slot.generation == self._generation.get(slot.tenant, 0)
            and slot.expires - now > self.renew_margin
        )
        if keep:
            slot.last_used = now
            self._idle.setdefault(slot.tenant, deque()).append(slot)
        else:
            self._open -= 1
        return keep
