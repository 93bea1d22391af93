"""The tenantguard exception tree.

Every error names who must act and says what to do next. Errors carry a stable
``code`` (searchable in the docs) and structured fields where they help.

::

    TenantGuardError                      (base, code TG000)
     +-- UsageError                        the caller passed bad input
     |    +-- InvalidTenantId              TG001 malformed / wrong-typed tenant id
     |    +-- NoTenantContext              TG002 no tenant bound where one is required
     |    +-- TenantContextChanged         TG003 tenant switched under an open lease/transaction
     |    +-- InvalidIdentifier            TG004 bad schema/table/role/setting name
     |    +-- UnsupportedOperation         TG005 an operation tenantguard cannot bind safely
     |    +-- LeaseNotHeld                 TG006 a connection used after its lease, or elsewhere
     |    +-- InvalidSigningKey            TG007 a malformed signing key or token setting
     |    +-- SessionStateRefused          TG008 (an UnsupportedOperation) session state on a lease
     +-- ConfigurationError                the database or environment is misconfigured
     |    +-- UnsafeRoleError              TG101 runtime role can bypass RLS
     |    +-- NotInstalledError            TG102 `tenantguard install` has not run
     |    +-- TableNotFoundError           TG103 a named table does not exist
     |    +-- MissingTenantColumn          TG104 a table lacks the tenant column
     |    +-- ConnectionFailed             TG105 server unreachable or DSN invalid
     |    +-- EmbeddedServerError          TG106 embedded PostgreSQL could not start
     +-- IsolationError                    isolation was about to be violated
          +-- ContaminatedConnection       TG201 a connection left session state behind
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConnectionFailed",
    "ContaminatedConnection",
    "EmbeddedServerError",
    "InvalidIdentifier",
    "InvalidSigningKey",
    "InvalidTenantId",
    "IsolationError",
    "LeaseNotHeld",
    "MissingTenantColumn",
    "NoTenantContext",
    "NotInstalledError",
    "SessionStateRefused",
    "TableNotFoundError",
    "TenantContextChanged",
    "TenantGuardError",
    "UnsafeRoleError",
    "UnsupportedOperation",
    "UsageError",
]


class TenantGuardError(Exception):
    """Base of every tenantguard error."""

    code = "TG000"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\nHint: {hint}")


class UsageError(TenantGuardError):
    """The caller passed something tenantguard cannot accept."""


class InvalidTenantId(UsageError, ValueError):
    code = "TG001"

    def __init__(self, value: object, reason: str, *, expected: str | None = None) -> None:
        self.value = value
        self.expected = expected
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        hint = (
            f"pass a valid {expected} tenant id" if expected else "pass an int, a UUID or a text id"
        )
        super().__init__(f"invalid tenant id {shown}: {reason}", hint=hint)


class NoTenantContext(UsageError, LookupError):
    code = "TG002"

    def __init__(self, action: str = "this operation") -> None:
        super().__init__(
            f"no tenant is bound for {action}; nothing was sent to the database",
            hint="wrap the code in `with tenantguard.tenant(tenant_id):` "
            "(or set it in your request middleware)",
        )


class TenantContextChanged(UsageError):
    code = "TG003"

    def __init__(self, bound: object, current: object) -> None:
        self.bound = bound
        self.current = current
        super().__init__(
            f"the tenant changed from {bound!r} to {current!r} while a connection or "
            "transaction was bound to the first one; nothing was sent",
            hint="check out a new connection inside the new `tenant(...)` block",
        )


class InvalidIdentifier(UsageError, ValueError):
    code = "TG004"

    def __init__(self, value: object, kind: str, rule: str) -> None:
        self.value = value
        super().__init__(f"invalid {kind} {value!r}: {rule}")


class UnsupportedOperation(UsageError):
    code = "TG005"


class LeaseNotHeld(UsageError):
    """A pooled connection was used outside the lease that handed it out.

    After ``with pool.connection() as conn:`` ends, the connection belongs to the pool
    (and soon to another tenant's request); during the lease it belongs to the thread
    or asyncio task that took it. Nothing is sent.
    """

    code = "TG006"

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(
            f"this connection is not leased to the caller: {why}; nothing was sent",
            hint="use a connection only inside its `with pool.connection()` block, in the "
            "thread or task that opened it; take a new lease for other work",
        )


class SessionStateRefused(UnsupportedOperation):
    """A statement that could leave session state on a shared connection, not sent."""

    code = "TG008"

    def __init__(self, effects: frozenset[str] | set[str]) -> None:
        self.effects = sorted(effects)
        super().__init__(
            "this statement can leave session state on the connection "
            f"({', '.join(self.effects)}), and the pool refuses such statements on a tenant "
            "lease: through a transaction-mode PgBouncer it would reach other clients' "
            "transactions mid-lease; nothing was sent",
            hint="use transaction-scoped forms (SET LOCAL, set_config(..., true), "
            "pg_advisory_xact_lock, a transaction instead of DO); on a direct connection, "
            "TenantPool(session_state='reset') sends them and resets the connection at checkin",
        )


class InvalidSigningKey(UsageError, ValueError):
    """A signing key (``<key id>:<secret hex>``) or a signing option is malformed."""

    code = "TG007"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"invalid signing key: {reason}",
            hint="use the TENANTGUARD_SIGNING_KEY=<key id>:<secret> line that "
            "`tenantguard keys create` (or `keys rotate`) printed",
        )


class ConfigurationError(TenantGuardError):
    """The database, its roles or the environment need fixing."""


class UnsafeRoleError(ConfigurationError):
    code = "TG101"

    def __init__(
        self,
        role: str,
        problems: list[str],
        fixes: list[str],
        *,
        summary: str = "can bypass row-level security",
    ) -> None:
        self.role = role
        self.problems = problems
        self.fixes = fixes
        text = "; ".join(problems)
        super().__init__(
            f"role {role!r} {summary}: {text}",
            hint="as an administrator run: " + " ".join(fixes),
        )


class NotInstalledError(ConfigurationError):
    code = "TG102"

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} is missing from the database",
            hint="run `tenantguard install --dsn ADMIN_DSN --app-role ROLE --owner-role ROLE` first",
        )


class TableNotFoundError(ConfigurationError):
    code = "TG103"

    def __init__(self, table: str) -> None:
        self.table = table
        super().__init__(
            f"table {table!r} does not exist",
            hint="name tables as SCHEMA.TABLE and check the DSN points at the right database",
        )


class MissingTenantColumn(ConfigurationError):
    code = "TG104"

    def __init__(self, table: str, column: str) -> None:
        self.table = table
        self.column = column
        super().__init__(
            f"table {table} has no column {column!r}",
            hint="add the column, or pass --tenant-column with the column that holds the tenant",
        )


class ConnectionFailed(ConfigurationError):
    code = "TG105"

    def __init__(self, target: str, cause: str) -> None:
        self.target = target
        super().__init__(
            f"cannot connect to {target}: {cause}",
            hint="check the DSN (postgresql://user@host:port/dbname), that the server is "
            "running and that the role may log in",
        )


class EmbeddedServerError(ConfigurationError):
    code = "TG106"


class IsolationError(TenantGuardError):
    """Isolation was about to be violated; tenantguard stopped it."""


class ContaminatedConnection(IsolationError):
    code = "TG201"

    def __init__(self, tenant: object, kinds: list[str]) -> None:
        self.tenant = tenant
        self.kinds = kinds
        super().__init__(
            f"a connection returned by tenant {tenant!r} carried session state ({', '.join(kinds)})",
            hint="use transaction-scoped settings (SET LOCAL / set_config(..., true)) "
            "and avoid session state on pooled connections",
        )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a driver error's summary), for messages."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
