"""Acting as the runtime role from an administrator's connection (audit, probe).

The live checks run SQL as the runtime role. Three ways, tried in this order:

* ``set-role``: the admin may ``SET ROLE`` to it (a superuser, or a member with the
  ``SET`` option on PostgreSQL 16+);
* ``grant``: the admin may grant itself that membership (``CREATEROLE`` up to
  PostgreSQL 15; ``ADMIN OPTION`` on the runtime role from 16, which the role's creator
  has): the grant is made *inside* each transaction that acts as the role, and rolled
  back with it, so nothing persists. This is the managed-database master user's way;
* ``app-dsn``: a dedicated login as the runtime role (``--app-dsn``).

When none works, :attr:`RuntimeAccess.problem` says which grant is missing and who can
make it; the tools then report every check that needed it as not run (never clean).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.admin.connect import admin_connect
from tenantguard.errors import first_line

__all__ = ["RuntimeAccess", "resolve_access"]


@dataclass
class RuntimeAccess:
    """How this run acts as the runtime role, or why it cannot."""

    role: str
    admin: str  # the admin connection's login role
    method: str | None  # "set-role" | "grant" | "app-dsn" | None (cannot)
    problem: str | None = None  # why not (None: it can)
    fix: str | None = None  # SQL that makes it possible (run by whom: in *problem*)
    grant: sql.Composed | None = None  # run before SET LOCAL ROLE (method "grant")
    app_dsn: str | None = None
    _app: psycopg.Connection[Any] | None = field(default=None, repr=False)

    @property
    def available(self) -> bool:
        return self.method is not None

    @property
    def needs(self) -> str:
        """What a check that acts as the runtime role needs, for "not run" findings."""
        return f"to act as the runtime role {self.role!r}: {self.problem}"

    def become(self, conn: psycopg.Connection[Any]) -> None:
        """Inside an open transaction on the *admin* connection: act as the runtime role
        until it ends (``SET LOCAL ROLE``, after the transaction-local grant if needed)."""
        if self.grant is not None:
            conn.execute(self.grant)
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(self.role)))

    @contextlib.contextmanager
    def session(self, conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
        """A transaction that always rolls back, acting as the runtime role: on the
        ``--app-dsn`` login when there is one, else on *conn* after :meth:`become`."""
        if self.method is None:
            raise RuntimeError(self.problem)  # callers check :attr:`available` first
        if self.app_dsn is not None:
            if self._app is None or self._app.closed:
                self._app = admin_connect(self.app_dsn, autocommit=True)
                self._app.prepare_threshold = None
            with self._app.transaction(force_rollback=True):
                yield self._app
            return
        with conn.transaction(force_rollback=True):
            self.become(conn)
            yield conn

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


def _try(conn: psycopg.Connection[Any], role: str, grant: sql.Composed | None) -> str | None:
    """None if SET ROLE (after *grant*) works in a rolled-back transaction, else the error."""
    try:
        with conn.transaction(force_rollback=True):
            if grant is not None:
                conn.execute(grant)
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    except psycopg.Error as exc:
        return first_line(exc)
    return None


def grant_sql(role: str, admin: str, server_version_num: int) -> sql.Composed:
    """The membership the admin needs: SET only, no inherited privileges (PostgreSQL 16+)."""
    q = sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(admin))
    if server_version_num >= 160000:
        q += sql.SQL(" WITH INHERIT FALSE, SET TRUE")
    return q


def resolve_access(
    conn: psycopg.Connection[Any], role: str, app_dsn: str | None = None, *, prefer_app: bool = True
) -> RuntimeAccess:
    """Find how *conn*'s admin can act as *role* (see the module docstring).

    *prefer_app*: use the ``--app-dsn`` login before ``SET ROLE`` (the audit: a real
    login cannot ``RESET ROLE`` into the admin's privileges); the probe needs the admin's
    transaction (its synthetic rows) and passes False.
    """
    row = conn.execute("SELECT current_user::text, current_setting('server_version_num')::int")
    admin, version = row.fetchone() or ("", 0)
    if app_dsn is not None and prefer_app:
        return RuntimeAccess(role, admin, "app-dsn", app_dsn=app_dsn)
    direct = _try(conn, role, None)
    if direct is None:
        return RuntimeAccess(role, admin, "set-role")
    grant = grant_sql(role, admin, version)
    if _try(conn, role, grant) is None:
        return RuntimeAccess(role, admin, "grant", grant=grant)
    if app_dsn is not None:
        return RuntimeAccess(role, admin, "app-dsn", app_dsn=app_dsn)
    fix = grant.as_string(conn) + ";"
    if version >= 160000:
        who = f"a role with ADMIN OPTION on {role!r} (the role that created it, or a superuser)"
        detail = (
            f"{admin!r} cannot SET ROLE {role!r} ({direct}) and has no ADMIN OPTION on it to "
            f"grant itself that membership for the run"
        )
    else:
        who = "a superuser, or a role with CREATEROLE"
        detail = (
            f"{admin!r} cannot SET ROLE {role!r} ({direct}) and cannot grant itself that "
            "membership (it is neither superuser nor CREATEROLE)"
        )
    problem = f"{detail}; {who} can run: {fix} Or pass --app-dsn (the runtime role's own login)"
    return RuntimeAccess(role, admin, None, problem=problem, fix=fix)
