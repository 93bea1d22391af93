"""A PgBouncer with its admin console open, for the pooler rule (TGA171).

Reuses the project's launcher (``tenantguard.bench.pgbouncer``) and adds settings and
``[databases]`` entries. The audit only reads the console, so the upstream server is
never contacted.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tenantguard.bench.pgbouncer import PgBouncer, find_pgbouncer

ADMIN = "postgres"


def require_pgbouncer() -> None:
    """Skip without the binary, except in CI, where the pooler tests must run."""
    if find_pgbouncer() is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must install pgbouncer (apt-get install -y pgbouncer)")
        pytest.skip("pgbouncer is not installed")


class AdminPgBouncer(PgBouncer):
    def __init__(
        self,
        host: str,
        port: int,
        *,
        settings: dict[str, str] | None = None,
        databases: list[str] | None = None,
        users: list[str] | None = None,
    ) -> None:
        settings = dict(settings or {})
        super().__init__(
            host,
            port,
            users=sorted({ADMIN, *(users or [])}),
            pool_mode=settings.pop("pool_mode", "transaction"),
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
