"""Shared bits of the command line: consoles and error handling (exit code 2)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from rich.console import Console

from tenantguard.errors import TenantGuardError, first_line

__all__ = ["err", "handled", "out"]

F = TypeVar("F", bound=Callable[..., Any])

err = Console(stderr=True)
out = Console()


def _fail(exc: TenantGuardError) -> None:
    err.print(f"[bold red]error[/] [dim]{exc.code}[/] {exc.message}", highlight=False)
    if exc.hint:
        err.print(f"[yellow]hint:[/] {exc.hint}", highlight=False)
    sys.exit(2)


def handled(fn: F) -> F:
    """Turn tenantguard errors into a clear message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TenantGuardError as exc:
            _fail(exc)
        except psycopg.Error as exc:
            first = first_line(exc)
            err.print(f"[bold red]database error[/] {first}", highlight=False)
            err.print(
                "[yellow]hint:[/] nothing was committed; check the DSN's role has the "
                "privileges this command needs (an administrator for install/protect)"
            )
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
