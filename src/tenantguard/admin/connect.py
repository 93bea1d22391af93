"""Open an administrative connection with errors that say what to do."""

from __future__ import annotations

from typing import Any

import psycopg

from tenantguard.core.dsn import check_dsn, connect_error, describe_dsn

__all__ = ["admin_connect", "describe_dsn"]


def admin_connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """``psycopg.connect`` with :class:`ConnectionFailed` / :class:`UsageError` on failure."""
    check_dsn(dsn)
    try:
        return psycopg.connect(dsn, connect_timeout=10, **kwargs)
    except psycopg.Error as exc:
        raise connect_error(dsn, exc) from None
