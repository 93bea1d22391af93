"""Binding: how a tenant context becomes database state for one transaction.

The default :class:`SettingBinder` sends one statement,
``SELECT set_config(tenant_setting, id, true), set_config(user_setting, uid, true)``:
transaction-scoped (``is_local = true``), so it vanishes at COMMIT or ROLLBACK and a
pooled connection can never carry it into another request. The setting names and
values travel as bound parameters.

The binder is a pluggable step: anything with ``bind_query(ctx) -> (query, params)``
works, e.g. a signed context that SQL on the app connection cannot forge.
"""

from __future__ import annotations

from typing import LiteralString, Protocol

from psycopg import sql

from tenantguard.core.context import TenantContext
from tenantguard.core.names import check_setting_name

__all__ = ["Binder", "SettingBinder"]


class Binder(Protocol):
    """Turns a tenant context into one SQL statement run first in each transaction."""

    def bind_query(self, ctx: TenantContext) -> tuple[LiteralString, tuple[str, ...]]: ...


_BIND_QUERY: LiteralString = (
    "SELECT pg_catalog.set_config(%s, %s, true), pg_catalog.set_config(%s, %s, true)"
)


def pinned_bind_query(search_path: str) -> LiteralString:
    """The binding that also pins the role and search_path for the transaction: a
    session-level SET ROLE or search_path left on the server connection (by another client
    of the same PgBouncer pool, say) cannot change what this transaction runs as or
    resolves to.

    The role is pinned to the login (``role`` = ``none``) when ``current_user`` differs
    from ``session_user``, and the search path to *search_path* (the login's default) when
    it differs; setting search_path, even to the value it has, would make the server
    recompute its search path on the next name lookup. The pins are constants of the pool,
    written into the text (the path as a quoted literal), so the statement binds the same
    four values as the unpinned one: measured side by side, eight parameters cost the
    server more than the comparisons do (BENCHMARKS.md).
    """
    path = sql.Literal(search_path).as_string()
    # (A LiteralString in spirit: the path is the login's own default, quoted by psycopg.)
    return (
        "SELECT pg_catalog.set_config(%s, %s, true), pg_catalog.set_config(%s, %s, true), "
        "CASE WHEN CURRENT_USER OPERATOR(pg_catalog.<>) SESSION_USER "
        "THEN pg_catalog.set_config('role', 'none', true) END, "
        f"CASE WHEN pg_catalog.current_setting('search_path') OPERATOR(pg_catalog.<>) {path} "
        f"THEN pg_catalog.set_config('search_path', {path}, true) END"
    )


class SettingBinder:
    """Bind the tenant (and the user, or ``''`` for none) as transaction-local settings.

    The user setting is always written, so a user id left on a session by code
    outside tenantguard cannot leak into a request that has no user.
    """

    __slots__ = ("_pin_path", "_pinned", "setting", "user_setting")

    #: ``bind_query`` depends on the context only, so a lease may reuse its result.
    #: (A binder that signs each transaction, say, leaves this unset.)
    stable = True

    def __init__(self, setting: str = "app.tenant_id", user_setting: str = "app.user_id") -> None:
        self.setting = check_setting_name(setting)
        self.user_setting = check_setting_name(user_setting)
        self._pinned: LiteralString | None = None
        self._pin_path: str | None = None

    def bind_query(self, ctx: TenantContext) -> tuple[LiteralString, tuple[str, ...]]:
        return self.bind_values(str(ctx.tenant), ctx.user or "")

    @property
    def pins(self) -> str | None:
        """The search_path pinned transaction-locally with the tenant (and the role pinned
        to the login), or None. The pools set it when they open, from the login's default."""
        return self._pinned and self._pin_path

    @pins.setter
    def pins(self, search_path: str | None) -> None:
        self._pinned = None if search_path is None else pinned_bind_query(search_path)
        self._pin_path = search_path

    def bind_values(self, tenant: str, user: str) -> tuple[LiteralString, tuple[str, ...]]:
        """The binding statement for these setting values (pinned, if set)."""
        return self._pinned or _BIND_QUERY, (self.setting, tenant, self.user_setting, user)

    def __repr__(self) -> str:
        return f"SettingBinder(setting={self.setting!r}, user_setting={self.user_setting!r})"
