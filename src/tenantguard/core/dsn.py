"""Connection strings in messages and errors (no I/O).

One place decides how a DSN is shown (never its password) and how a failure to
connect becomes a tenantguard error: a DSN or connection option libpq cannot parse is
the caller's mistake (:class:`~tenantguard.errors.UsageError`), anything else while
connecting is :class:`~tenantguard.errors.ConnectionFailed`.
"""

from __future__ import annotations

import psycopg

from tenantguard.errors import ConnectionFailed, TenantGuardError, UsageError, first_line

__all__ = ["check_dsn", "connect_error", "describe_dsn"]

_DSN_HINT = "use postgresql://user@host:port/dbname or 'host=... dbname=...'"


def describe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<invalid DSN>"
    return " ".join(f"{k}={v}" for k, v in parts.items() if k != "password") or "(defaults)"


def check_dsn(dsn: str) -> None:
    """Raise :class:`UsageError` for a DSN libpq cannot parse (before any I/O)."""
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid DSN: {first_line(exc)}", hint=_DSN_HINT) from None


def connect_error(dsn: str, exc: psycopg.Error) -> TenantGuardError:
    """The tenantguard error for *exc*, raised by ``psycopg.connect(dsn, ...)``."""
    if isinstance(exc, psycopg.ProgrammingError):  # a malformed DSN or connection option
        return UsageError(f"invalid connection parameters: {first_line(exc)}", hint=_DSN_HINT)
    return ConnectionFailed(describe_dsn(dsn), first_line(exc))
