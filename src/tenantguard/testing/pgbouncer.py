"""Run a real PgBouncer on a free loopback port (for tests and benchmarks).

The binary is the one asked for (an argument, else ``$TENANTGUARD_PGBOUNCER``), else
``pgbouncer`` on ``PATH`` or Debian's ``/usr/sbin/pgbouncer``; nothing else is searched
(the repository's ``make pgbouncer`` build is passed in through the variable). Its
version decides whether clients may keep prepared statements in transaction mode:
PgBouncer 1.21+ tracks protocol-level ones (``max_prepared_statements``, written to the
ini), 1.18 (Debian bookworm) does not. PgBouncer refuses to run as root, so as root it
is started with ``-u postgres`` (or ``run_as``). Auth is ``trust`` against an auth file
listing the given users: loopback testing only.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = [
    "DEBIAN_PGBOUNCER",
    "ENV_VAR",
    "MAX_PREPARED_STATEMENTS",
    "PgBouncer",
    "find_pgbouncer",
    "installed_pgbouncer",
    "pgbouncer_version",
]

ENV_VAR = "TENANTGUARD_PGBOUNCER"
DEBIAN_PGBOUNCER = "/usr/sbin/pgbouncer"
PREPARED_SINCE = (1, 21)  # protocol-level prepared statements in transaction mode
MAX_PREPARED_STATEMENTS = 100


def find_pgbouncer(binary: str | None = None) -> str | None:
    """The pgbouncer to run: *binary*, else ``$TENANTGUARD_PGBOUNCER``, else one installed.

    An explicit choice is never swapped for another binary: when it is not an executable
    file (or a name on ``PATH``), :class:`FileNotFoundError` says so. Without one, the
    ``pgbouncer`` on ``PATH`` or Debian's ``/usr/sbin/pgbouncer``, or None.
    """
    for source, chosen in (("pgbouncer binary", binary), (ENV_VAR, os.environ.get(ENV_VAR))):
        if chosen:  # an empty variable counts as unset
            found = shutil.which(chosen)
            if found is None:
                raise FileNotFoundError(f"{source} {chosen!r} is not an executable file")
            return os.path.abspath(found)
    return installed_pgbouncer()


def installed_pgbouncer() -> str | None:
    """The machine's own pgbouncer: the one on ``PATH``, else Debian's, else None."""
    return shutil.which("pgbouncer") or (
        DEBIAN_PGBOUNCER if os.access(DEBIAN_PGBOUNCER, os.X_OK) else None
    )


def pgbouncer_version(binary: str) -> tuple[int, int, int]:
    """``binary --version``'s first line, ``PgBouncer X.Y.Z``, as ``(X, Y, Z)``."""
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{binary} --version did not run: {exc}") from exc
    first = next(iter(done.stdout.splitlines()), "").strip()
    m = re.fullmatch(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?\S*", first)
    if m is None:
        raise RuntimeError(
            f"{binary} is not a PgBouncer: --version printed {first!r} (exit {done.returncode})"
        )
    return int(m[1]), int(m[2]), int(m[3] or 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """``with PgBouncer(host, port, users=[...]) as pgb: connect to 127.0.0.1:pgb.port``.

    It also listens on a Unix socket in its own directory (``pgb.conninfo(unix=True)``).

    *host* is an IP/hostname or a Unix socket directory (the directory must be
    traversable by the user PgBouncer runs as). *binary* as for :func:`find_pgbouncer`;
    ``version`` is the binary's, and with ``keeps_prepared`` (1.21+) the ini sets
    ``max_prepared_statements``, so clients can keep psycopg's default prepared statements.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        users: list[str],
        pool_mode: str = "transaction",
        pool_size: int = 2,
        run_as: str = "postgres",
        max_client_conn: int = 200,
        binary: str | None = None,
    ) -> None:
        found = find_pgbouncer(binary)
        if found is None:
            raise RuntimeError(
                "pgbouncer is not installed (apt-get install -y pgbouncer, or set"
                f" {ENV_VAR} to a pgbouncer binary)"
            )
        self.binary = found
        self.version = pgbouncer_version(found)
        self.host, self.upstream_port = host, port
        self.users = users
        self.pool_mode, self.pool_size = pool_mode, pool_size
        self.max_client_conn = max_client_conn
        self.run_as = run_as if os.geteuid() == 0 else None
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tenantguard-pgbouncer-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def keeps_prepared(self) -> bool:
        """Protocol-level prepared statements survive transaction pooling (PgBouncer 1.21+)."""
        return self.version >= PREPARED_SINCE

    def info(self) -> dict[str, object]:
        """What a benchmark records about this PgBouncer."""
        return {
            "version": ".".join(map(str, self.version)),
            "keeps_prepared": self.keeps_prepared,
            "max_prepared_statements": MAX_PREPARED_STATEMENTS if self.keeps_prepared else None,
        }

    def _write_config(self) -> Path:
        auth = self.dir / "users.txt"
        auth.write_text("".join(f'"{u}" ""\n' for u in self.users))
        cfg = self.dir / "pgbouncer.ini"
        prepared = (
            f"max_prepared_statements = {MAX_PREPARED_STATEMENTS}\n" if self.keeps_prepared else ""
        )
        cfg.write_text(
            "[databases]\n"
            f"* = host={self.host} port={self.upstream_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.dir}\n"  # also a Unix socket: compare like with like
            "auth_type = trust\n"
            f"auth_file = {auth}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "min_pool_size = 0\n"
            "reserve_pool_size = 0\n"
            f"max_client_conn = {self.max_client_conn}\n"
            f"{prepared}"
            "server_reset_query =\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            for p in (self.dir, auth, cfg):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        return cfg

    def start(self, timeout: float = 10.0) -> PgBouncer:
        cfg = self._write_config()
        cmd = [self.binary, str(cfg)]
        if self.run_as:
            cmd = [self.binary, "-u", self.run_as, str(cfg)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        log = self.log_tail()
        self.stop()
        raise RuntimeError(f"pgbouncer did not start on 127.0.0.1:{self.port}:\n{log}")

    def log_tail(self, lines: int = 20) -> str:
        text = ""
        logfile = self.dir / "pgbouncer.log"
        if logfile.exists():
            text = "\n".join(logfile.read_text(errors="replace").splitlines()[-lines:])
        if self.proc is not None and self.proc.stderr is not None and self.proc.poll() is not None:
            text += self.proc.stderr.read().decode(errors="replace")
        return text

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def conninfo(self, *, unix: bool = False, **params: str) -> dict[str, str]:
        """Connection parameters: TCP loopback, or with *unix* its Unix socket."""
        if unix:
            return {"host": str(self.dir), "port": str(self.port), **params}
        return {"host": "127.0.0.1", "port": str(self.port), "sslmode": "disable", **params}

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
