"""Audited break-glass access: ``tenantguard admin grant|revoke|log|verify``.

A break-glass grant lets one dedicated LOGIN role (a support engineer, a reporting
job) read, or with ``write`` also change, the rows of the tenants it names, for a
limited time, with a reason and a ticket reference. The grant *is* a row of the
append-only, hash-chained log ``tenantguard.breakglass_log``: the SECURITY DEFINER
function ``tenantguard.breakglass_grant`` (owned by the owner role, ``search_path``
pinned, EXECUTE for the owner and its members only) checks the grantee, appends the
row and grants the table privileges in one transaction, and the policies of tables
protected with ``--role-scope`` admit the grantee's own session only for a tenant
it binds (with the setting, as the application does) that one of its live grants
covers, and for writes only under a live write grant. So PostgreSQL, not this library, enforces the scope,
and there is no way to create a grant that the log does not show.

Each log row stores ``hash = sha256(prev_hash || fields)`` (fields length-prefixed,
timestamps in microseconds); :func:`verify_log` recomputes the chain here in Python
and reports edited, deleted, inserted or reordered rows. A trigger refuses UPDATE,
DELETE and TRUNCATE, and rows that do not extend the chain; what it cannot stop (a
superuser, or the owner disabling its own trigger and rewriting the tail of the
chain consistently) is what an externally kept anchor (``verify --anchor SEQ:HASH``)
catches.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.admin._scope import GENESIS_HASH, ensure_scope, scope_installed
from tenantguard.admin.credentials import parse_ttl
from tenantguard.core.ids import parse_tenant_id
from tenantguard.core.names import check_identifier
from tenantguard.errors import NotInstalledError, UsageError

__all__ = [
    "Grant",
    "LogRow",
    "VerifyResult",
    "grant_access",
    "read_log",
    "revoke_access",
    "row_hash",
    "verify_log",
]

log = logging.getLogger("tenantguard.breakglass")

MAX_GRANT_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class Grant:
    seq: int
    grantee: str
    tenants: tuple[str, ...]
    write: bool
    expires_at: datetime


@dataclass(frozen=True)
class LogRow:
    seq: int
    at: datetime
    at_us: int
    actor: str
    action: str
    grant_seq: int | None
    grantee: str
    tenants: tuple[str, ...]
    can_write: bool
    reason: str
    ticket: str
    expires_at: datetime
    expires_us: int
    prev_hash: str
    hash: str
    state: str  # grants: live, expired or revoked; revoke rows: revoke


@dataclass
class VerifyResult:
    rows: int = 0
    head: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def _field(value: str | None) -> str:
    return "~" if value is None else f"{len(value)}:{value}"


def row_hash(
    prev_hash: str,
    seq: int,
    at_us: int,
    actor: str,
    action: str,
    grant_seq: int | None,
    grantee: str,
    tenants: Sequence[str],
    can_write: bool,
    reason: str,
    ticket: str,
    expires_us: int,
) -> str:
    """The chain hash of one row, computed as ``tenantguard._bg_hash`` computes it."""
    text = (
        prev_hash
        + _field(str(seq))
        + _field(str(at_us))
        + _field(actor)
        + _field(action)
        + _field(None if grant_seq is None else str(grant_seq))
        + _field(grantee)
        + _field(str(len(tenants)))
        + "".join(_field(t) for t in tenants)
        + _field("t" if can_write else "f")
        + _field(reason)
        + _field(ticket)
        + _field(str(expires_us))
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _ensure(conn: psycopg.Connection[Any], schema: str) -> None:
    if not scope_installed(conn, schema):
        with conn.transaction():
            ensure_scope(conn, schema)


def grant_access(
    conn: psycopg.Connection[Any],
    grantee: str,
    tenants: Sequence[object],
    *,
    reason: str,
    ticket: str,
    ttl: str | int | float | timedelta = "10m",
    write: bool = False,
    schema: str = "tenantguard",
) -> Grant:
    """Grant *grantee* access to *tenants* for *ttl*; the log row and privileges in one go."""
    check_identifier(grantee, "role name")
    if not tenants:
        raise UsageError("a grant needs at least one tenant", hint="pass --tenant ID (repeatable)")
    tenant_texts = sorted({str(parse_tenant_id(t)) for t in tenants})
    if not reason.strip():
        raise UsageError("a grant needs a reason", hint="pass --reason 'why access is needed'")
    if not ticket.strip():
        raise UsageError("a grant needs a ticket reference", hint="pass --ticket REF")
    life = parse_ttl(ttl, maximum=MAX_GRANT_TTL)
    _ensure(conn, schema)
    with conn.transaction():
        row = conn.execute(
            sql.SQL("SELECT {}(%s, %s, %s, %s, %s, %s)").format(
                sql.Identifier(schema, "breakglass_grant")
            ),
            (grantee, tenant_texts, write, reason, ticket, life),
        ).fetchone()
        assert row is not None
        seq = int(row[0])
        got = conn.execute(
            sql.SQL("SELECT expires_at FROM {} WHERE seq = %s").format(
                sql.Identifier(schema, "breakglass_log")
            ),
            (seq,),
        ).fetchone()
        assert got is not None
    log.info("break-glass grant #%d to %s for %s", seq, grantee, ",".join(tenant_texts))
    return Grant(seq, grantee, tuple(tenant_texts), write, got[0])


def revoke_access(
    conn: psycopg.Connection[Any], grant_seq: int, *, reason: str, schema: str = "tenantguard"
) -> int:
    """Revoke grant *grant_seq* (a log row of its own); returns the revoke row's seq."""
    if not reason.strip():
        raise UsageError("revoking needs a reason", hint="pass --reason TEXT")
    _ensure(conn, schema)
    with conn.transaction():
        row = conn.execute(
            sql.SQL("SELECT {}(%s, %s)").format(sql.Identifier(schema, "breakglass_revoke")),
            (grant_seq, reason),
        ).fetchone()
    assert row is not None
    return int(row[0])


_LOG_QUERY = """
SELECT g.seq, g.at, (EXTRACT(epoch FROM g.at) * 1000000)::bigint, g.actor::text, g.action,
       g.grant_seq, g.grantee::text, g.tenants, g.can_write, g.reason, g.ticket, g.expires_at,
       (EXTRACT(epoch FROM g.expires_at) * 1000000)::bigint, g.prev_hash, g.hash,
       CASE WHEN g.action = 'revoke' THEN 'revoke'
            WHEN EXISTS (SELECT 1 FROM {log} r WHERE r.action = 'revoke' AND r.grant_seq = g.seq)
                THEN 'revoked'
            WHEN g.expires_at <= pg_catalog.now() THEN 'expired'
            ELSE 'live' END
FROM {log} g ORDER BY g.seq
"""


def read_log(conn: psycopg.Connection[Any], *, schema: str = "tenantguard") -> list[LogRow]:
    """Every log row in ``seq`` order."""
    if not scope_installed(conn, schema):
        raise NotInstalledError(f"the break-glass log {schema}.breakglass_log")
    rows = conn.execute(
        sql.SQL(_LOG_QUERY).format(log=sql.Identifier(schema, "breakglass_log"))
    ).fetchall()
    return [
        LogRow(
            seq=r[0],
            at=r[1],
            at_us=r[2],
            actor=r[3],
            action=r[4],
            grant_seq=r[5],
            grantee=r[6],
            tenants=tuple(r[7]),
            can_write=r[8],
            reason=r[9],
            ticket=r[10],
            expires_at=r[11],
            expires_us=r[12],
            prev_hash=r[13],
            hash=r[14],
            state=r[15],
        )
        for r in rows
    ]


def verify_log(
    conn: psycopg.Connection[Any],
    *,
    schema: str = "tenantguard",
    anchor: tuple[int, str] | None = None,
) -> VerifyResult:
    """Recompute the chain; every broken link, gap or mismatch is a problem.

    *anchor* is a ``(seq, hash)`` recorded elsewhere earlier (``admin log`` prints the
    head): the row must still be there with that hash.
    """
    rows = read_log(conn, schema=schema)
    result = VerifyResult(rows=len(rows))
    prev = GENESIS_HASH
    grants: set[int] = set()
    for expected_seq, row in enumerate(rows, start=1):
        if row.seq != expected_seq:
            result.problems.append(
                f"row #{row.seq} follows #{expected_seq - 1}: "
                f"{row.seq - expected_seq} row(s) missing (deleted?)"
            )
        if row.prev_hash != prev:
            result.problems.append(
                f"row #{row.seq} does not link to the row before it "
                "(a row was deleted, inserted or reordered)"
            )
        computed = row_hash(
            row.prev_hash,
            row.seq,
            row.at_us,
            row.actor,
            row.action,
            row.grant_seq,
            row.grantee,
            row.tenants,
            row.can_write,
            row.reason,
            row.ticket,
            row.expires_us,
        )
        if computed != row.hash:
            result.problems.append(
                f"row #{row.seq} was edited (its content does not match its hash)"
            )
        if row.action == "grant":
            grants.add(row.seq)
        elif row.grant_seq not in grants:
            result.problems.append(
                f"row #{row.seq} revokes #{row.grant_seq}, which is not an earlier grant"
            )
        prev = row.hash
    result.head = prev
    if anchor is not None:
        seq, digest = anchor
        match = [r for r in rows if r.seq == seq]
        if not match:
            result.problems.append(f"the anchored row #{seq} is gone")
        elif match[0].hash != digest:
            result.problems.append(f"the anchored row #{seq} no longer has the recorded hash")
    return result
