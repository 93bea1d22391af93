"""What a PgBouncer in front of the database does: read from its admin console.

``SHOW CONFIG`` / ``SHOW DATABASES`` / ``SHOW POOLS`` on the special ``pgbouncer``
database (simple query protocol, autocommit). Read-only: nothing is SET or RELOADed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from tenantguard.admin.connect import admin_connect, describe_dsn
from tenantguard.errors import UsageError, first_line

__all__ = ["PoolerInfo", "load_pooler"]


@dataclass
class PoolerInfo:
    target: str  # the DSN without its password
    version: str
    config: dict[str, str]
    databases: list[dict[str, Any]] = field(default_factory=list)  # SHOW DATABASES rows
    pools: list[dict[str, Any]] = field(default_factory=list)  # SHOW POOLS rows

    @property
    def pool_mode(self) -> str:
        return self.config.get("pool_mode", "session")

    def entries_for(self, dbname: str) -> list[dict[str, Any]]:
        """The [databases] entries that lead to *dbname* on the server."""
        return [d for d in self.databases if d.get("database") == dbname and d.get("name")]


def _rows(conn: psycopg.Connection[Any], command: str) -> list[dict[str, Any]]:
    cur = conn.cursor()
    cur.execute(command)  # a fixed console command (LiteralString)
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]


def load_pooler(dsn: str) -> PoolerInfo:
    """Connect to the admin console of the PgBouncer at *dsn* (dbname forced to pgbouncer)."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid --pooler-dsn: {str(exc).strip()}") from None
    params["dbname"] = "pgbouncer"
    console = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})
    with admin_connect(console, autocommit=True, prepare_threshold=None) as conn:
        try:
            config = {str(r["key"]): str(r["value"] or "") for r in _rows(conn, "SHOW CONFIG")}
            version_rows = _rows(conn, "SHOW VERSION")
            databases = _rows(conn, "SHOW DATABASES")
            pools = _rows(conn, "SHOW POOLS")
        except psycopg.Error as exc:
            first = first_line(exc)
            raise UsageError(
                f"{describe_dsn(console)} is not a PgBouncer admin console: {first}",
                hint="point --pooler-dsn at PgBouncer with a user listed in its admin_users "
                "or stats_users",
            ) from None
    version = str(next(iter(version_rows[0].values()))) if version_rows else ""
    return PoolerInfo(describe_dsn(console), version, config, databases, pools)
