"""``tenantguard keys``: create, rotate, retire and list signing keys.

The database keeps each key's HMAC blocks (never the secret as such) in
``<schema>_keys.signing_keys``; the application keeps ``<key id>:<secret>`` in its
configuration. Rotation without downtime: ``rotate`` adds a second live key (the
database accepts both), the application moves to it, then ``retire`` the old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.core.signed_sql import KEY_TABLE, insert_key_statement, keys_schema_for
from tenantguard.core.signing import SigningKey, key_blocks, new_key
from tenantguard.errors import ConfigurationError, NotInstalledError, UsageError

__all__ = ["MAX_LIVE_KEYS", "KeyInfo", "create_key", "list_keys", "retire_key", "rotate_key"]

#: Live keys at once: the current one and, while rolling, its successor.
MAX_LIVE_KEYS = 2


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    created_at: datetime
    retired_at: datetime | None

    @property
    def live(self) -> bool:
        return self.retired_at is None


def _table(schema: str) -> sql.Identifier:
    return sql.Identifier(keys_schema_for(schema), KEY_TABLE)


def list_keys(conn: psycopg.Connection[Any], schema: str = "tenantguard") -> list[KeyInfo]:
    """Every key id, oldest first (no secrets)."""
    if conn.execute(
        "SELECT pg_catalog.to_regclass(%s)", (_table(schema).as_string(conn),)
    ).fetchone() == (None,):
        raise NotInstalledError(
            f"the signing key table {keys_schema_for(schema)}.{KEY_TABLE} "
            "(run `tenantguard install ... --signed`)"
        )
    rows = conn.execute(
        sql.SQL("SELECT key_id, created_at, retired_at FROM {} ORDER BY created_at, key_id").format(
            _table(schema)
        )
    ).fetchall()
    return [KeyInfo(*r) for r in rows]


def _add(conn: psycopg.Connection[Any], schema: str) -> SigningKey:
    key = new_key()
    ipad, opad = key_blocks(key)
    conn.execute(insert_key_statement(keys_schema_for(schema)), (key.key_id, ipad, opad))
    return key


def create_key(conn: psycopg.Connection[Any], schema: str = "tenantguard") -> SigningKey:
    """The first key. Refuses when a live key exists (use :func:`rotate_key`)."""
    with conn.transaction():
        live = [k for k in list_keys(conn, schema) if k.live]
        if live:
            raise UsageError(
                f"a live signing key exists already ({live[-1].key_id})",
                hint="use `tenantguard keys rotate` to add its successor",
            )
        return _add(conn, schema)


def rotate_key(conn: psycopg.Connection[Any], schema: str = "tenantguard") -> SigningKey:
    """Add a successor key; the database accepts both until the old one is retired."""
    with conn.transaction():
        live = [k for k in list_keys(conn, schema) if k.live]
        if not live:
            raise UsageError(
                "there is no live signing key to rotate", hint="use `tenantguard keys create`"
            )
        if len(live) >= MAX_LIVE_KEYS:
            raise UsageError(
                f"{len(live)} keys are live already ({', '.join(k.key_id for k in live)})",
                hint=f"retire the older one first: tenantguard keys retire {live[0].key_id}",
            )
        return _add(conn, schema)


def retire_key(
    conn: psycopg.Connection[Any], key_id: str, schema: str = "tenantguard", *, force: bool = False
) -> KeyInfo:
    """Stop accepting tokens signed with *key_id* (from the next statement on)."""
    with conn.transaction():
        keys = {k.key_id: k for k in list_keys(conn, schema)}
        if key_id not in keys:
            raise UsageError(
                f"no signing key {key_id!r}", hint="`tenantguard keys list` shows the key ids"
            )
        if not keys[key_id].live:
            return keys[key_id]
        if sum(k.live for k in keys.values()) == 1 and not force:
            raise ConfigurationError(
                f"{key_id} is the only live key: retiring it makes every signed context "
                "fail (all requests are refused)",
                hint="rotate first, or pass --force to refuse all requests on purpose",
            )
        row = conn.execute(
            sql.SQL(
                "UPDATE {} SET retired_at = pg_catalog.now() WHERE key_id = %s "
                "RETURNING key_id, created_at, retired_at"
            ).format(_table(schema)),
            (key_id,),
        ).fetchone()
        assert row is not None
        return KeyInfo(*row)
