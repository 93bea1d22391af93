"""A PgBouncer with its admin console open, for the pooler rule (TGA171).

Reuses the project's launcher (``tenantguard.testing.pgbouncer``) and adds settings and
``[databases]`` entries. The audit only reads the console, so the upstream server is
never contacted.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tenantguard.testing.pgbouncer import PgBouncer, find_pgbouncer

ADMIN = "postgres"


def require_pgbouncer() -> None:
    """Skip without a usable binary, except in CI, where the pooler tests must run.

    The binary is ``find_pgbouncer()``'s: ``$TENANTGUARD_PGBOUNCER`` when set (an error
    when it names no executable), else the installed one.
    """
    try:
        problem = None if find_pgbouncer() else "pgbouncer is not installed"
    except FileNotFoundError as exc:
        problem = str(exc)
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PgBouncer tests: {problem}")
        pytest.skip(problem)


class AdminPgBouncer(PgBouncer):
    def __init__(
        self,
        host: str,
        port: int,
        *,
        settings: dict[str, str] | None = None,
        databases: list[str] | None = None,
        users: list[str] | None = None,
        binary: str | None = None,
    ) -> None:
        settings = dict(settings or {})
        super().__init__(
            host,
            port,
            users=sorted({ADMIN, *(users or [])}),
            pool_mode=settings.pop("pool_mode", "transaction"),
            binary=binary,
        )
        self.settings = {"admin_users": ADMIN, **settings}
        self.databases = databases or []

    def _write_config(self) -> Path:
        cfg = super()._write_config()
        lines = [
            line
            for line in cfg.read_text().splitlines()
            if line.split("=", 1)[0].strip() not in self.settings
        ]
        out: list[str] = []
        for line in lines:
            out.append(line)
            if line == "[databases]":
                out.extend(self.databases)
            elif line == "[pgbouncer]":
                out.extend(f"{k} = {v}" for k, v in self.settings.items())
        cfg.write_text("\n".join(out) + "\n")
        return cfg

    @property
    def console_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={ADMIN} dbname=pgbouncer sslmode=disable"
