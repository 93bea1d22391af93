"""Open an administrative connection with errors that say what to do."""

from __future__ import annotations

from typing import Any

import psycopg

from tenantguard.errors import ConnectionFailed, UsageError, first_line

__all__ = ["admin_connect", "describe_dsn"]


def describe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<invalid DSN>"
    return " ".join(f"{k}={v}" for k, v in parts.items() if k != "password") or "(defaults)"


def admin_connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """``psycopg.connect`` with :class:`ConnectionFailed` / :class:`UsageError` on failure."""
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise UsageError(
            f"invalid DSN: {str(exc).strip()}",
            hint="use postgresql://user@host:port/dbname or 'host=... dbname=...'",
        ) from None
    try:
        return psycopg.connect(dsn, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        first = first_line(exc)
        raise ConnectionFailed(describe_dsn(dsn), first) from None
