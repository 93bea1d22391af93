# WARNING: this file is generated from _credential_pool_async.py by tools/async_to_sync.py.
# Edit the async source and run the tool; CI checks that they agree.
"""``CredentialPool``: connections per tenant, each logged in with that tenant's own login.

Where :class:`~tenantguard.TenantPool` shares one login and binds the tenant per
transaction, this pool opens each tenant's connections with a short-lived login of
that tenant (``tenantguard credentials``), so the database, not the binding, fixes
the tenant: SQL on the connection cannot become another tenant. It keeps idle
connections per tenant under one cap across tenants (the least recently used idle
connection of another tenant makes room), closes idle connections after
``max_idle`` seconds and before their credential expires, and ``revoke(tenant)``
closes that tenant's connections: idle ones at once, leased ones when returned.

Generated from :mod:`._credential_pool_async` by ``tools/async_to_sync.py``: edit that
file, then run the tool (``make lint`` checks that they agree).

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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from tenantguard.admin.credentials import Credential
from tenantguard.core.ids import TenantKind
from tenantguard.drivers.psycopg._credential_pool_base import (
    CredentialPoolBase,
    CredentialSource,
    Slot,
)
from tenantguard.errors import ConnectionFailed, first_line

__all__ = ["CredentialPool"]
log = logging.getLogger("tenantguard.pool")


class CredentialPool(CredentialPoolBase[psycopg.Connection[Any]]):
    """A pool of per-tenant connections, each logged in with the tenant's own credential.

    ``max_size`` caps open connections across all tenants; ``max_idle`` (seconds)
    closes connections unused that long; a connection is not handed out within
    ``renew_margin`` seconds of its credential's end, and a credential that close to
    its end is renewed from *source*. ``timeout`` bounds the wait for a free slot
    (then :class:`psycopg_pool.PoolTimeout`). ``kwargs`` go to
    :meth:`psycopg.Connection.connect` (autocommit by default; not ``user`` or
    ``password``, which come from each credential). Close it with ``pool.close()``
    or use it as ``with CredentialPool(...) as pool:``.

    :param conninfo: where to connect (host, port, database...); the user and the
        password are each tenant's.
    :param source: anything with ``issue(tenant) -> Credential``, and optionally
        ``revoke(tenant)``, such as :class:`AdminCredentialSource`.
    :param tenant_kind: the type of the tenant ids (``int``, ``bigint``, ``uuid``,
        ``text``), checked before any I/O.
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
        super().__init__(
            conninfo,
            max_size=max_size,
            max_idle=max_idle,
            timeout=timeout,
            renew_margin=renew_margin,
            tenant_kind=tenant_kind,
            kwargs=kwargs,
        )
        self.source = source
        self._cond = threading.Condition()
        self._issuing: dict[str, threading.Lock] = {}  # per tenant, made under _cond

    # ------------------------------------------------------------------ public

    @contextmanager
    def connection(self, tenant: object | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A connection logged in as *tenant*'s login (default: the ``tenant(...)`` context).

        Raises :class:`~tenantguard.errors.NoTenantContext` before any I/O when no tenant
        is given or bound. A connection returned inside a transaction is rolled back.
        """
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
            idle, leased = self._revoked(key)
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
        """Connections ``open`` (leased or idle), ``leased``, ``idle``, and ``tenants`` idle."""
        with self._cond:
            return self._stats()

    def close(self) -> None:
        """Close the idle connections; leased ones close when returned. New leases are refused."""
        with self._cond:
            idle = self._closing()
            self._cond.notify_all()
        for s in idle:
            s.conn.close()

    def __enter__(self) -> CredentialPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _acquire(self, key: str) -> Slot[psycopg.Connection[Any]]:
        deadline = time.monotonic() + self.timeout
        victims: list[Slot[psycopg.Connection[Any]]] = []
        try:
            with self._cond:
                while True:
                    now = time.monotonic()
                    got = self._checkout(key, now, victims)
                    if isinstance(got, Slot):
                        return got
                    if got is not None:
                        generation = got
                        break
                    remaining = deadline - now
                    if remaining <= 0:
                        raise self._timed_out()
                    self._cond.wait(remaining)
        finally:
            for s in victims:
                s.conn.close()
        try:
            slot = self._connect(key, generation)
        except BaseException:
            with self._cond:
                self._unreserve()
                self._cond.notify()
            raise
        with self._cond:
            self._lease(slot)
        return slot

    def _credential(self, key: str, generation: int) -> tuple[Credential, float]:
        with self._cond:
            cached = self._cached_credential(key, time.monotonic())
            issuing = self._issuing.setdefault(key, threading.Lock())
        if cached is not None:
            return cached
        # One issue per tenant at a time: a second one would refresh the same login's
        # password under the first caller before it logs in.
        with issuing:
            with self._cond:
                cached = self._cached_credential(key, time.monotonic())
            if cached is not None:  # issued while this caller waited
                return cached
            cred = self.source.issue(key)
            entry = self._credential_entry(key, cred, time.monotonic())
            with self._cond:
                self._keep_credential(key, entry, generation)
        return entry

    def _connect(self, key: str, generation: int) -> Slot[psycopg.Connection[Any]]:
        cred, expires = self._credential(key, generation)
        try:
            conn = psycopg.Connection.connect(
                self.conninfo, user=cred.user, password=cred.password, **self.kwargs
            )
        except psycopg.OperationalError as exc:
            # libpq's message names the user, never the password.
            raise ConnectionFailed(f"tenant {key}'s login {cred.user}", first_line(exc)) from None
        return Slot(conn, key, generation, expires, time.monotonic())

    def _release(self, slot: Slot[psycopg.Connection[Any]]) -> None:
        conn = slot.conn
        keep = not (conn.closed or conn.broken)
        try:
            if keep and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                try:
                    conn.rollback()
                except psycopg.Error:
                    keep = False
        except BaseException:  # interrupted mid-rollback: the connection is not kept
            keep = False
            raise
        finally:
            with self._cond:
                keep = self._checkin(slot, keep, time.monotonic())
                self._cond.notify()
            if not keep:
                conn.close()
