"""``CredentialPool``: connections per tenant, each logged in with that tenant's own login.

Where :class:`~tenantguard.TenantPool` shares one login and binds the tenant per
transaction, this pool opens each tenant's connections with a short-lived login of
that tenant (``tenantguard credentials``), so the database, not the binding, fixes
the tenant: SQL on the connection cannot become another tenant. It keeps idle
connections per tenant under one cap across tenants (the least recently used idle
connection of another tenant makes room), closes idle connections after
``max_idle`` seconds and before their credential expires, and ``revoke(tenant)``
closes that tenant's connections: idle ones at once, leased ones when returned.

Credentials come from a *source*: anything with ``issue(tenant) -> Credential``
(:class:`AdminCredentialSource` issues them with an administrator DSN; a secrets
service can do the same). A source with ``revoke(tenant)`` is also called by
:meth:`CredentialPool.revoke`. Passwords are passed to libpq as a connection
parameter, never logged, never part of an error message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import psycopg
from psycopg_pool import PoolTimeout

from tenantguard.admin.credentials import Credential, issue_credential, revoke_credentials
from tenantguard.core.context import require_tenant
from tenantguard.core.ids import TenantKind, parse_tenant_id
from tenantguard.errors import ConnectionFailed, UsageError, first_line

__all__ = ["AdminCredentialSource", "CredentialPool", "CredentialSource"]

log = logging.getLogger("tenantguard.pool")


@runtime_checkable
class CredentialSource(Protocol):
    def issue(self, tenant: str) -> Credential: ...


class AdminCredentialSource:
    """Issues (and revokes) credentials with an administrator DSN, one short connection each."""

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
class _Slot:
    conn: psycopg.Connection[Any]
    tenant: str
    generation: int
    expires: float  # monotonic time at which the credential ends
    last_used: float


class CredentialPool:
    """A pool of per-tenant connections, each logged in with the tenant's own credential.

    ``max_size`` caps open connections across all tenants; ``max_idle`` (seconds)
    closes connections unused that long; a connection is not handed out within
    ``renew_margin`` seconds of its credential's end, and a credential that close to
    its end is renewed from *source*. ``timeout`` bounds the wait for a free slot.
    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        source: CredentialSource,
        max_size: int = 10,
        max_idle: float = 300.0,
        timeout: float = 30.0,
        renew_margin: float = 30.0,
        tenant_kind: TenantKind | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        if max_size < 1:
            raise UsageError("max_size must be at least 1")
        if kwargs and ("password" in kwargs or "user" in kwargs):
            raise UsageError(
                "CredentialPool sets user and password from each tenant's credential",
                hint="remove user= and password= from kwargs",
            )
        self.conninfo = conninfo
        self.source = source
        self.max_size = max_size
        self.max_idle = max_idle
        self.timeout = timeout
        self.renew_margin = renew_margin
        self.tenant_kind = tenant_kind
        self.kwargs: dict[str, Any] = {"autocommit": True, **(kwargs or {})}
        self._cond = threading.Condition()
        self._idle: dict[str, deque[_Slot]] = {}
        self._leased: dict[int, _Slot] = {}
        self._open = 0
        self._generation: dict[str, int] = {}
        self._credentials: dict[str, tuple[Credential, float]] = {}
        self._closed = False

    # ------------------------------------------------------------------ public

    @contextmanager
    def connection(self, tenant: object | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A connection logged in as *tenant*'s login (default: the ``tenant(...)`` context)."""
        key = self._key(tenant)
        slot = self._acquire(key)
        try:
            yield slot.conn
        finally:
            self._release(slot)

    def revoke(self, tenant: object) -> int:
        """Close *tenant*'s pooled connections and forget its credential; returns how many.

        Idle connections close now; leased ones close when their block ends. If the
        source can ``revoke``, the tenant's logins are revoked in the database too.
        """
        key = self._key(tenant)
        with self._cond:
            self._generation[key] = self._generation.get(key, 0) + 1
            self._credentials.pop(key, None)
            idle = list(self._idle.pop(key, ()))
            self._open -= len(idle)
            leased = sum(1 for s in self._leased.values() if s.tenant == key)
            self._cond.notify_all()
        for s in idle:
            s.conn.close()
        revoke = getattr(self.source, "revoke", None)
        if callable(revoke):
            revoke(key)
        log.info("revoked tenant %s: closed %d idle, %d leased on return", key, len(idle), leased)
        return len(idle) + leased

    def evict_idle(self) -> int:
        """Close idle connections past ``max_idle`` or near their credential's end."""
        with self._cond:
            doomed = self._take_stale(time.monotonic())
            self._cond.notify_all()
        for s in doomed:
            s.conn.close()
        return len(doomed)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "open": self._open,
                "leased": len(self._leased),
                "idle": sum(len(q) for q in self._idle.values()),
                "tenants": sum(1 for q in self._idle.values() if q),
            }

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle = [s for q in self._idle.values() for s in q]
            self._idle.clear()
            self._open -= len(idle)
            self._cond.notify_all()
        for s in idle:
            s.conn.close()

    def __enter__(self) -> CredentialPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _key(self, tenant: object | None) -> str:
        if tenant is None:
            return str(require_tenant("CredentialPool.connection()").tenant)
        return str(parse_tenant_id(tenant, self.tenant_kind))

    def _take_stale(self, now: float) -> list[_Slot]:
        doomed: list[_Slot] = []
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

    def _acquire(self, key: str) -> _Slot:
        deadline = time.monotonic() + self.timeout
        victims: list[_Slot] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise UsageError("the CredentialPool is closed")
                    now = time.monotonic()
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
                        generation = self._generation.get(key, 0)
                        break
                    lru = self._lru_idle()
                    if lru is not None:  # make room: close another tenant's idle connection
                        victims.append(lru)
                        generation = self._generation.get(key, 0)
                        break
                    remaining = deadline - now
                    if remaining <= 0:
                        raise PoolTimeout(
                            f"no connection free within {self.timeout}s "
                            f"({self.max_size} open, all leased)"
                        )
                    self._cond.wait(remaining)
        finally:
            for s in victims:
                s.conn.close()
        try:
            slot = self._connect(key, generation)
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._leased[id(slot)] = slot
        return slot

    def _lru_idle(self) -> _Slot | None:
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

    def _credential(self, key: str) -> tuple[Credential, float]:
        with self._cond:
            cached = self._credentials.get(key)
        if cached is not None and cached[1] - time.monotonic() > self.renew_margin:
            return cached
        cred = self.source.issue(key)
        if cred.tenant != key:
            raise UsageError(
                f"the credential source returned a login for tenant {cred.tenant!r}, not {key!r}"
            )
        left = (cred.valid_until - datetime.now(UTC)).total_seconds()
        entry = (cred, time.monotonic() + left)
        with self._cond:
            self._credentials[key] = entry
        return entry

    def _connect(self, key: str, generation: int) -> _Slot:
        cred, expires = self._credential(key)
        try:
            conn = psycopg.connect(
                self.conninfo, user=cred.user, password=cred.password, **self.kwargs
            )
        except psycopg.OperationalError as exc:
            # libpq's message names the user, never the password.
            raise ConnectionFailed(f"tenant {key}'s login {cred.user}", first_line(exc)) from None
        now = time.monotonic()
        return _Slot(conn, key, generation, expires, now)

    def _release(self, slot: _Slot) -> None:
        conn = slot.conn
        keep = not conn.closed and not conn.broken
        if keep and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.rollback()
            except psycopg.Error:
                keep = False
        now = time.monotonic()
        with self._cond:
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
            self._cond.notify()
        if not keep:
            conn.close()
