"""Running SQL as the runtime role, as one tenant, in a savepoint that always rolls back.

Every attack goes through :meth:`Prober.attempt`: a savepoint inside the per-table
transaction, ``SET LOCAL ROLE`` to the runtime role, the tenant setting bound with
``set_config(.., true)`` (or a hostile value), bounded by ``statement_timeout`` and
``lock_timeout``, then rolled back whatever happened.

The probe works on connections of its own, so the caller's connection keeps no trace
of it (no setting placeholder, no session lock). "No tenant bound" is tried on a second
connection that never sets the tenant setting at all: once a session has set a custom
setting, even transaction-locally, it reads ``''`` instead of NULL, and a policy that
tests ``IS NULL`` would look fail-closed when it is not.

Queries are sent with numbered placeholders (``$1``) through a raw cursor, so a table
called ``50%_off`` is not mistaken for a placeholder.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.core.signing import SigningKey, sign_context
from tenantguard.errors import first_line
from tenantguard.tooling._runas import RuntimeAccess
from tenantguard.tooling.catalog import Table

__all__ = ["SETUP_FAILED", "UNSET", "Outcome", "Prober", "Query", "Unset", "execute"]


class Unset(enum.Enum):
    """No tenant bound: the runtime role's persistent defaults (if any) apply."""

    UNSET = "unset"


UNSET = Unset.UNSET
TenantValue = str | Unset
Query = sql.Composed | sql.SQL
Check = Callable[[psycopg.Connection[Any]], bool]

_PERCENT = re.compile(r"%(s|%)")
SETUP_FAILED = "TGSETUP"  # an Outcome.sqlstate: the attempt's own setup failed (no verdict)


def _render(query: Query, conn: psycopg.Connection[Any], literals: Sequence[Any] | None) -> str:
    """*query* with ``%s`` / ``{}`` placeholders as ``$n`` (or as literals, for evidence)."""
    counter = itertools.count()

    def placeholder() -> str:
        i = next(counter)
        if literals is None:
            return f"${i + 1}"
        return sql.Literal(literals[i]).as_string(conn)

    def walk(part: sql.Composable) -> str:
        if isinstance(part, sql.Composed):
            return "".join(walk(p) for p in part)  # a Composed iterates over its parts
        if isinstance(part, sql.Placeholder):
            return placeholder()
        if isinstance(part, sql.SQL):
            text = part.as_string(None)  # an SQL fragment renders as itself
            return _PERCENT.sub(lambda m: "%" if m.group(1) == "%" else placeholder(), text)
        return part.as_string(conn)

    return walk(query)


def execute(
    conn: psycopg.Connection[Any], query: Query, params: Sequence[Any] | None = None
) -> psycopg.RawCursor[Any]:
    """Run a composed query whose values are ``%s`` placeholders, as ``$n`` parameters."""
    cur = psycopg.RawCursor(conn)
    cur.execute(_render(query, conn, None), list(params or ()))
    return cur


@dataclass(frozen=True)
class Outcome:
    """What one attempted statement did."""

    rows: list[tuple[Any, ...]]
    rowcount: int
    sqlstate: str | None = None
    error: str | None = None
    constraint: str | None = None
    landed: bool | None = None  # the admin's after-check: did the write reach tenant B?

    @property
    def ok(self) -> bool:
        return self.sqlstate is None

    @property
    def denied(self) -> bool:
        """Refused by a row-level security policy or a table/column privilege.

        Other ``42501`` refusals (a sequence, a function, a schema) are not the tenant
        boundary at work: those attempts are inconclusive, not safe.
        """
        if self.sqlstate != "42501" or not self.error:
            return False
        return "row-level security" in self.error or "permission denied for table" in self.error

    @property
    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows and self.rows[0] else None


class Prober:
    """Runs attempts for one probe run on its own admin connections (never committed).

    *work* holds one transaction per table (synthetic rows, savepoints per attempt);
    *fresh* is used only for attempts with no tenant bound, and never sets the tenant
    setting. Both are the caller's to close.
    """

    def __init__(
        self,
        work: psycopg.Connection[Any],
        fresh: psycopg.Connection[Any],
        *,
        app_role: str,
        setting: str,
        role_defaults: Sequence[tuple[str, str]] = (),
        statement_timeout_ms: int = 10_000,
        replica_mode: bool = False,
        call_volatile: bool = False,
        user_setting: str = "app.user_id",
        access: RuntimeAccess | None = None,
        signing_key: SigningKey | None = None,
        table_setup: Sequence[tuple[Query, Sequence[Any]]] = (),
    ):
        self.conn = work
        self.fresh = fresh
        self.app_role = app_role
        self.setting = setting
        self.role_defaults = list(role_defaults)  # (name, value) the app role logs in with
        self.statement_timeout_ms = statement_timeout_ms
        self.replica_mode = replica_mode
        self.call_volatile = call_volatile  # call VOLATILE SECURITY DEFINER functions too
        self.user_setting = user_setting
        self.access = access  # how to act as the runtime role (None: plain SET LOCAL ROLE)
        # Set per table when the admin is the owner of a table with FORCEd row level security:
        # FORCE is lifted inside a transaction or savepoint so the admin sees every row.
        self.forced_table: sql.Identifier | None = None
        self.replay_tenants: list[str] = []  # the tenant of each replayed synthetic row
        self.user_value: str | None = None  # bound with the tenant where policies pin a user
        # install --signed: the tenant setting must hold a context signed with a live key;
        # *table_setup* runs first in each table's transaction (e.g. inserts the probe's
        # own key, rolled back with everything else).
        self.signing_key = signing_key
        self.table_setup = list(table_setup)
        self.attempts = 0
        self.seen: set[str] = set()  # objects probed once per run (views, functions)
        self.scanned: list[Table] = []  # the tenant tables in the run's scope
        # The synthetic rows of the current table, re-made on *fresh* for unset attempts
        # (each call builds the INSERT anew: fresh unique values, so it never waits on the
        # uncommitted twin in *work*).
        self.replay: list[Callable[[], tuple[Query, list[Any]]]] = []

    def render(self, query: Query | str, params: Sequence[Any] | None = None) -> str:
        """The statement with its values inlined: evidence a person can paste into psql."""
        if isinstance(query, str):
            query = sql.SQL(query)
        return _render(query, self.conn, list(params or ()))

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
            bound = self.render(
                "SELECT set_config(%s, %s, true);", [self.setting, self.bound_value(tenant)]
            )
            if self.user_value is not None:
                bound += " " + self.render(
                    "SELECT set_config(%s, %s, true);", [self.user_setting, self.user_value]
                )
        return f"{head} BEGIN; {bound} "

    def bound_value(self, tenant: str, *, raw: bool = False) -> str:
        """What goes into the tenant setting: *tenant*, or its signed context."""
        if self.signing_key is None or raw:
            return tenant
        return self.sign(tenant)

    def sign(self, tenant: str, *, expires_at: int | None = None) -> str:
        """*tenant*'s signed context (with the bound user), valid for an hour by default."""
        assert self.signing_key is not None
        expiry = int(time.time()) + 3600 if expires_at is None else expires_at
        return sign_context(self.signing_key, tenant, self.user_value, expires_at=expiry)

    def begin_table(self) -> None:
        """First thing in a table's (rolled-back) transaction."""
        for query, params in self.table_setup:
            execute(self.conn, query, params)

    def attempt(
        self,
        tenant: TenantValue,
        query: Query,
        params: Sequence[Any] | None = None,
        *,
        extra_setup: Sequence[Query] = (),
        check: Check | None = None,
        raw: bool = False,
    ) -> tuple[Outcome, str]:
        """Run *query* as the runtime role with *tenant* bound; always rolled back.

        *check*, if given, runs afterwards as the administrator in the same savepoint
        (``RESET ROLE``) and says whether the write really reached the victim: a trigger
        may have rewritten the row. Returns the outcome and the evidence SQL.
        """
        self.attempts += 1
        if raw and tenant is not UNSET:  # bind exactly this value (a forged context)
            bound = self.render("SELECT set_config(%s, %s, true);", [self.setting, tenant])
            head = f"SET ROLE {sql.Identifier(self.app_role).as_string(self.conn)};"
            evidence = f"{head} BEGIN; {bound} " + self.render(query, params) + "; ROLLBACK;"
        else:
            evidence = self.preamble(tenant) + self.render(query, params) + "; ROLLBACK;"
        conn = self.fresh if tenant is UNSET else self.conn
        try:
            with conn.transaction(force_rollback=True):
                if tenant is UNSET:
                    self._timeouts(conn)
                    try:
                        self._replay(conn)
                    except psycopg.Error as exc:  # the setup failed, not the attack
                        failed = _failed(exc)
                        return Outcome([], -1, SETUP_FAILED, failed.error), evidence
                self.enter(tenant, extra_setup, conn=conn, raw=raw)
                cur = execute(conn, query, params)
                rows = cur.fetchall() if cur.description else []
                landed = None
                if check is not None:
                    conn.execute("RESET ROLE")
                    with self.admin_view(conn):
                        landed = check(conn)
                return Outcome(rows, cur.rowcount, landed=landed), evidence
        except psycopg.Error as exc:
            return _failed(exc), evidence

    def _replay(self, conn: psycopg.Connection[Any]) -> None:
        if not self.replay:
            return
        if self.replica_mode:
            conn.execute("SET LOCAL session_replication_role = replica")
        for i, make in enumerate(self.replay):
            if self.forced_table is not None:  # as the owner, FORCE applies: bind the row's tenant
                self.bind_as_owner(conn, self.replay_tenants[i])
            execute(conn, *make())
        if self.forced_table is not None:
            # Unbind again. The setting now reads '' rather than NULL in this transaction: the
            # one case where "no tenant" is tried as an empty setting (--app-dsn adds a fresh
            # login that never set it).
            conn.execute("SELECT set_config(%s, '', true)", (self.setting,))
        if self.replica_mode:
            conn.execute("SET LOCAL session_replication_role = origin")

    @contextlib.contextmanager
    def admin_view(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """The admin reads every tenant's rows of the table under attack. For an admin that
        owns it with FORCEd row level security: ``NO FORCE`` in a savepoint that is rolled
        back afterwards, which also releases the ACCESS EXCLUSIVE lock ``ALTER TABLE`` takes
        (another connection of the probe must still reach the table). Else nothing to do."""
        if self.forced_table is None:
            yield
            return
        with conn.transaction(force_rollback=True):
            conn.execute("SELECT set_config('lock_timeout', '2000', true)")  # never queue long
            conn.execute(
                sql.SQL("ALTER TABLE {} NO FORCE ROW LEVEL SECURITY").format(self.forced_table)
            )
            yield

    def bind_as_owner(self, conn: psycopg.Connection[Any], tenant: str) -> None:
        """Bind *tenant* for the admin's own insert of a synthetic row (FORCEd RLS applies)."""
        conn.execute("SELECT set_config(%s, %s, true)", (self.setting, tenant))

    def _timeouts(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
            (str(self.statement_timeout_ms), str(min(self.statement_timeout_ms, 2000))),
        )

    def enter(
        self,
        tenant: TenantValue,
        extra_setup: Sequence[Query] = (),
        *,
        conn: psycopg.Connection[Any] | None = None,
        raw: bool = False,
    ) -> None:
        """Inside an open savepoint: timeouts, the tenant (or the role's defaults), the role.

        With signing installed the tenant is bound as a signed context, unless *raw*."""
        c = conn or self.conn
        self._timeouts(c)
        if tenant is UNSET:
            # SET ROLE does not apply the role's ALTER ROLE ... SET defaults; a login would.
            for name, value in self.role_defaults:
                c.execute("SELECT set_config(%s, %s, true)", (name, value))
        else:
            value = self.bound_value(tenant, raw=raw)
            c.execute("SELECT set_config(%s, %s, true)", (self.setting, value))
            if self.user_value is not None:
                c.execute("SELECT set_config(%s, %s, true)", (self.user_setting, self.user_value))
        if self.access is not None:
            self.access.become(c)  # SET LOCAL ROLE, after a rolled-back self-grant if needed
        else:
            c.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(self.app_role)))
        for stmt in extra_setup:
            c.execute(stmt)


def _failed(exc: psycopg.Error) -> Outcome:
    diag = exc.diag
    first = first_line(exc)
    detail = f" ({diag.message_detail})" if diag.message_detail else ""
    return Outcome(
        [],
        -1,
        sqlstate=exc.sqlstate or "XX000",
        error=first + detail,
        constraint=diag.constraint_name,
    )
