"""Running SQL as the runtime role, as one tenant, in a savepoint that always rolls back.

Every attack goes through :meth:`Prober.attempt`: a savepoint inside the per-table
transaction, ``SET LOCAL ROLE`` to the runtime role, the tenant setting bound with
``set_config(.., true)`` (or left unset, emulating the runtime role's persistent
defaults, or set to a hostile value), bounded by ``statement_timeout`` and
``lock_timeout``, then rolled back whatever happened. Nothing an attack does survives
it; the caller's outer transaction rolls back too.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["UNSET", "Outcome", "Prober", "Unset"]


class Unset(enum.Enum):
    """No tenant bound: the runtime role's persistent defaults (if any) apply."""

    UNSET = "unset"


UNSET = Unset.UNSET
TenantValue = str | Unset


@dataclass(frozen=True)
class Outcome:
    """What one attempted statement did."""

    rows: list[tuple[Any, ...]]
    rowcount: int
    sqlstate: str | None = None
    error: str | None = None
    constraint: str | None = None

    @property
    def ok(self) -> bool:
        return self.sqlstate is None

    @property
    def denied(self) -> bool:
        """Refused by privileges or a row-level security policy (SQLSTATE 42501)."""
        return self.sqlstate == "42501"

    @property
    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows and self.rows[0] else None


class Prober:
    """Runs attempts for one probe run on an admin connection (never committed)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        app_role: str,
        setting: str,
        role_defaults: Sequence[tuple[str, str]] = (),
        statement_timeout_ms: int = 10_000,
    ):
        self.conn = conn
        self.app_role = app_role
        self.setting = setting
        self.role_defaults = list(role_defaults)  # (name, value) the app role logs in with
        self.statement_timeout_ms = statement_timeout_ms
        self.attempts = 0
        self.seen: set[str] = set()  # objects probed once per run (views, functions)
        self._mogrifier = psycopg.ClientCursor(conn)

    def render(self, query: sql.Composable | str, params: Sequence[Any] | None = None) -> str:
        """The statement with its values inlined: evidence a person can paste into psql."""
        text = query.as_string(self.conn) if isinstance(query, sql.Composable) else query
        if params:
            return self._mogrifier.mogrify(text, params)
        return text

    def preamble(self, tenant: TenantValue) -> str:
        """The evidence's first lines: who runs it, with which tenant bound."""
        head = f"SET ROLE {sql.Identifier(self.app_role).as_string(self.conn)};"
        if tenant is UNSET:
            defaults = [f"{n} = {v!r}" for n, v in self.role_defaults if n == self.setting]
            bound = (
                "/* no tenant bound"
                + (f"; the role's default applies: {defaults[0]}" if defaults else "")
                + " */"
            )
        else:
            bound = self.render("SELECT set_config(%s, %s, true);", [self.setting, tenant])
        return f"{head} BEGIN; {bound} "

    def attempt(
        self,
        tenant: TenantValue,
        query: sql.Composed | sql.SQL,
        params: Sequence[Any] | None = None,
        *,
        extra_setup: Sequence[sql.Composed | sql.SQL] = (),
    ) -> tuple[Outcome, str]:
        """Run *query* as the runtime role with *tenant* bound; always rolled back.

        Returns the outcome and the evidence (the SQL that reproduces it).
        """
        self.attempts += 1
        evidence = self.preamble(tenant) + self.render(query, params) + "; ROLLBACK;"
        try:
            with self.conn.transaction(force_rollback=True):
                self.enter(tenant, extra_setup)
                cur = self.conn.execute(query, params)
                rows = cur.fetchall() if cur.description else []
                return Outcome(rows, cur.rowcount), evidence
        except psycopg.Error as exc:
            return _failed(exc), evidence

    def enter(
        self, tenant: TenantValue, extra_setup: Sequence[sql.Composed | sql.SQL] = ()
    ) -> None:
        """Inside an open savepoint: timeouts, the tenant (or the role's defaults), the role."""
        c = self.conn
        c.execute(
            "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
            (str(self.statement_timeout_ms), str(min(self.statement_timeout_ms, 2000))),
        )
        if tenant is UNSET:
            # SET ROLE does not apply the role's ALTER ROLE ... SET defaults; a login would.
            for name, value in self.role_defaults:
                c.execute("SELECT set_config(%s, %s, true)", (name, value))
        else:
            c.execute("SELECT set_config(%s, %s, true)", (self.setting, tenant))
        c.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(self.app_role)))
        for stmt in extra_setup:
            c.execute(stmt)


def _failed(exc: psycopg.Error) -> Outcome:
    diag = exc.diag
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    detail = f" ({diag.message_detail})" if diag.message_detail else ""
    return Outcome(
        [],
        -1,
        sqlstate=exc.sqlstate or "XX000",
        error=first + detail,
        constraint=diag.constraint_name,
    )
