"""Short-lived per-tenant database logins: ``tenantguard credentials issue|revoke|list|sweep``.

For each tenant there is one NOLOGIN group role that holds the table privileges, and
LOGIN roles ("slots", one per issuer by default) that are members of that group
only, with a random password and ``VALID UNTIL``. The registry
``tenantguard.tenant_logins`` maps each login to its tenant; tables protected with
``protect --role-scope`` compare their tenant column with the tenant of the
session's login (``session_user``), never with the setting, so SQL on such a
connection cannot reach another tenant. The scope also ends when the registry says
the login expired or was revoked, even on a connection opened before.

Everything runs as the administrator of a managed PostgreSQL: ``NOSUPERUSER
CREATEROLE``, a member of the owner role (to grant on its tables and write the
registry). Passwords are sent to the server as SCRAM verifiers computed on the
client (libpq's ``PQencryptPasswordConn``), so no statement log shows them, and
nothing here logs them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.admin._scope import ensure_scope, scope_installed, scoped_tables
from tenantguard.admin.protect import runtime_grants
from tenantguard.core.ids import TenantId, TenantKind, parse_tenant_id
from tenantguard.core.names import QualifiedName, check_identifier
from tenantguard.errors import ConfigurationError, UsageError

__all__ = [
    "Credential",
    "LoginInfo",
    "RevokeResult",
    "issue_credential",
    "list_credentials",
    "parse_ttl",
    "revoke_credentials",
    "sweep_credentials",
]

log = logging.getLogger("tenantguard.credentials")

MAX_CREDENTIAL_TTL = timedelta(days=7)
_TTL = re.compile(r"\s*([0-9]+)\s*(s|sec|m|min|h|d)?\s*", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_PLAIN_TENANT = re.compile(r"[a-z0-9]{1,20}")
_SLOT = re.compile(r"[a-z0-9]{1,12}")
_ROLE_COMMENT = "tenantguard tenant group: database {db}, tenant {tenant}"


def parse_ttl(text: str | int | float | timedelta, *, maximum: timedelta) -> timedelta:
    """``15m``, ``1h``, ``90s``, ``2d`` or seconds as a number; positive and at most *maximum*."""
    if isinstance(text, timedelta):
        ttl = text
    elif isinstance(text, int | float) and not isinstance(text, bool):
        ttl = timedelta(seconds=text)
    else:
        m = _TTL.fullmatch(str(text))
        if not m:
            raise UsageError(
                f"invalid TTL {text!r}", hint="use a number with s, m, h or d, e.g. 15m or 1h"
            )
        ttl = timedelta(seconds=int(m.group(1)) * _UNITS[(m.group(2) or "s").lower()])
    if ttl <= timedelta(0) or ttl > maximum:
        raise UsageError(
            f"TTL {ttl} is out of range", hint=f"use more than 0s and at most {maximum}"
        )
    return ttl


@dataclass(frozen=True)
class Credential:
    """A login for one tenant. ``repr`` and ``str`` never show the password."""

    tenant: str
    user: str
    password: str = field(repr=False)
    valid_until: datetime
    dsn: str

    def as_dict(self) -> dict[str, str]:
        """The ``--format json`` payload: user, password, valid_until, dsn (no password in it)."""
        return {
            "user": self.user,
            "password": self.password,
            "valid_until": self.valid_until.isoformat(),
            "dsn": self.dsn,
        }

    def connect_kwargs(self) -> dict[str, str]:
        return {"user": self.user, "password": self.password}


@dataclass(frozen=True)
class LoginInfo:
    login: str
    tenant: str
    slot: str
    valid_until: datetime
    issued_at: datetime
    revoked_at: datetime | None
    state: str  # live, expired, revoked
    role_exists: bool


@dataclass
class RevokeResult:
    logins: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)  # could not be dropped, made NOLOGIN
    terminated: int = 0


def _role_part(tenant: str) -> str:
    """The tenant as it appears in role names: itself when short and plain, else a digest."""
    if _PLAIN_TENANT.fullmatch(tenant):
        return tenant
    # "h_" + digest: a plain id has no underscore, so no tenant id can choose another's
    # names (the seventeenth review squatted a digest as a plain id).
    return "h_" + hashlib.sha256(tenant.encode()).hexdigest()[:16]


def _check_slot(slot: str) -> str:
    if not _SLOT.fullmatch(slot):
        raise UsageError(
            f"invalid slot {slot!r}", hint="use 1 to 12 lowercase letters or digits, e.g. web1"
        )
    return slot


def _prefix(conn: psycopg.Connection[Any], prefix: str | None) -> str:
    # Roles are cluster-wide: the default prefix names the database (by oid), so a
    # login for tenant 1 of one database is never tenant 1's group of another.
    if prefix is None:
        row = conn.execute(
            "SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        prefix = f"tg{row[0]}"
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,23}", prefix):
        raise UsageError(
            f"invalid role prefix {prefix!r}",
            hint="use at most 24 lowercase letters, digits or _, starting with a letter",
        )
    return prefix


def group_role_name(prefix: str, tenant: str) -> str:
    return check_identifier(f"{prefix}_t_{_role_part(tenant)}", "role name")


def login_role_name(prefix: str, tenant: str, slot: str) -> str:
    return check_identifier(f"{prefix}_l_{_role_part(tenant)}_{slot}", "role name")


def _require_scope(conn: psycopg.Connection[Any], schema: str) -> list[tuple[str, str]]:
    if not scope_installed(conn, schema):
        ensure_scope(conn, schema)
    tables = scoped_tables(conn)
    if not tables:
        raise ConfigurationError(
            "no table is protected with --role-scope, so a per-tenant login would reach nothing "
            "(and policies without it would trust the tenant setting instead of the login)",
            hint="run `tenantguard protect SCHEMA.TABLE... --role-scope --dsn ADMIN` first",
        )
    return tables


def _server_version(conn: psycopg.Connection[Any]) -> int:
    return int(conn.info.server_version)


def _dsn_for(conn: psycopg.Connection[Any], user: str) -> str:
    params = {k: v for k, v in conn.info.get_parameters().items() if k != "password"}
    params["user"] = user
    return psycopg.conninfo.make_conninfo(**params)


def issue_credential(
    conn: psycopg.Connection[Any],
    tenant: object,
    *,
    ttl: str | int | float | timedelta = "15m",
    slot: str = "default",
    tenant_kind: TenantKind | None = None,
    schema: str = "tenantguard",
    role_prefix: str | None = None,
) -> Credential:
    """Create or refresh the tenant's login for *slot*: new password, new ``VALID UNTIL``.

    One transaction: the group role (created on first use), its privileges on every
    ``--role-scope`` table, the login (member of the group only; on PostgreSQL 16+
    with ``INHERIT TRUE, SET FALSE``), and its registry row. A refresh keeps the
    login's name and open connections; the previous password stops working.
    """
    tid: TenantId = parse_tenant_id(tenant, tenant_kind)
    tenant_text = str(tid)
    life = parse_ttl(ttl, maximum=MAX_CREDENTIAL_TTL)
    _check_slot(slot)
    password = secrets.token_urlsafe(32)
    with conn.transaction():
        tables = _require_scope(conn, schema)
        _serialize(conn, schema)
        prefix = _prefix(conn, role_prefix)
        group = group_role_name(prefix, tenant_text)
        login = login_role_name(prefix, tenant_text, slot)
        db = conn.info.dbname
        row = conn.execute("SELECT pg_catalog.now() + %s", (life,)).fetchone()
        assert row is not None
        valid_until: datetime = row[0]
        comment = _ROLE_COMMENT.format(db=db, tenant=tenant_text)
        have = conn.execute(
            "SELECT r.rolcanlogin, pg_catalog.shobj_description(r.oid, 'pg_authid') "
            "FROM pg_catalog.pg_roles r WHERE r.rolname = %s",
            (group,),
        ).fetchone()
        if have is None:
            conn.execute(
                sql.SQL(
                    "CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS "
                    "NOREPLICATION"
                ).format(sql.Identifier(group))
            )
            conn.execute(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(
                    sql.Identifier(group), sql.Literal(comment)
                )
            )
        elif have[0] or have[1] != comment:
            raise ConfigurationError(
                f"role {group!r} exists and is not tenantguard's group for tenant "
                f"{tenant_text!r} of database {db!r}",
                hint="drop or rename that role, or pass --role-prefix to use other names",
            )
        _grant_group(conn, group, tables, schema)
        _upsert_login(conn, login, group, password, valid_until, schema)
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (login, tenant, group_role, slot, valid_until) "
                "VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (login) DO UPDATE SET tenant = EXCLUDED.tenant, "
                "group_role = EXCLUDED.group_role, valid_until = EXCLUDED.valid_until, "
                "issued_at = pg_catalog.now(), revoked_at = NULL"
            ).format(sql.Identifier(schema, "tenant_logins")),
            (login, tenant_text, group, slot, valid_until),
        )
    log.info("issued credential %s for tenant %s until %s", login, tenant_text, valid_until)
    return Credential(tenant_text, login, password, valid_until, _dsn_for(conn, login))


def _serialize(conn: psycopg.Connection[Any], schema: str) -> None:
    """One issue or revoke at a time in this database, until the transaction ends.

    Concurrent GRANTs on the same table, schema or function (two tenants' groups), or
    ALTER ROLE on the same login, fail with "tuple concurrently updated": a pool that
    issues for several tenants at once (threads, asyncio tasks) would see them.
    """
    conn.execute(
        sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
            sql.Identifier(schema, "tenant_logins")
        )
    )


def _grant_group(
    conn: psycopg.Connection[Any], group: str, tables: list[tuple[str, str]], schema: str
) -> None:
    g = sql.Identifier(group)
    # What `protect --grant-to` gives a runtime role: schema USAGE, the DML, and USAGE on
    # the sequences behind serial columns.
    for stmt in runtime_grants(conn, [QualifiedName(nsp, name) for nsp, name in tables], group):
        conn.execute(stmt)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), g))
    # The policies name these helpers (the pool-model branch of the scope view); the
    # login never reaches that branch, but PostgreSQL checks EXECUTE on every call site.
    for fn in ("current_tenant()", "_fail(text, text)"):
        name, args = fn.split("(", 1)
        conn.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION {}({} TO {}").format(
                sql.Identifier(schema, name), sql.SQL(args), g
            )
        )


def _upsert_login(
    conn: psycopg.Connection[Any],
    login: str,
    group: str,
    password: str,
    valid_until: datetime,
    schema: str,
) -> None:
    # A SCRAM verifier, not the password: statement logs and pg_stat_activity see no secret.
    verifier = conn.pgconn.encrypt_password(
        password.encode(), login.encode(), b"scram-sha-256"
    ).decode()
    ident = sql.Identifier(login)
    secret = sql.SQL("PASSWORD {} VALID UNTIL {}").format(
        sql.Literal(verifier), sql.Literal(valid_until.isoformat())
    )
    have = conn.execute(
        "SELECT rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb OR rolreplication "
        "FROM pg_catalog.pg_roles WHERE rolname = %s",
        (login,),
    ).fetchone()
    if have is None:
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS "
                "NOREPLICATION "
            ).format(ident)
            + secret
        )
    else:
        registered = conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE login = %s").format(
                sql.Identifier(schema, "tenant_logins")
            ),
            (login,),
        ).fetchone()
        if registered is None or have[0]:
            raise ConfigurationError(
                f"role {login!r} exists but is not a tenantguard login "
                "(or has gained SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION)",
                hint="drop or rename that role, or pass --role-prefix to use other names",
            )
        # Only what a CREATEROLE administrator may change on a role it administers.
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN INHERIT ").format(ident) + secret)
    # Member of its tenant's group only: drop any other membership it may have gained.
    others = conn.execute(
        "SELECT r.rolname::text FROM pg_catalog.pg_auth_members m "
        "JOIN pg_catalog.pg_roles r ON r.oid = m.roleid "
        "JOIN pg_catalog.pg_roles me ON me.oid = m.member "
        "WHERE me.rolname = %s AND r.rolname <> %s",
        (login, group),
    ).fetchall()
    for (other,) in others:
        conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(other), ident))
    if _server_version(conn) >= 160000:
        # INHERIT: it uses the group's table privileges; SET FALSE: no SET ROLE at all.
        conn.execute(
            sql.SQL("GRANT {} TO {} WITH INHERIT TRUE, SET FALSE, ADMIN FALSE").format(
                sql.Identifier(group), ident
            )
        )
    else:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), ident))


def list_credentials(
    conn: psycopg.Connection[Any], *, schema: str = "tenantguard"
) -> list[LoginInfo]:
    """Every login in the registry, with its state (live, expired or revoked)."""
    if not scope_installed(conn, schema):
        return []
    rows = conn.execute(
        sql.SQL(
            "SELECT l.login::text, l.tenant, l.slot, l.valid_until, l.issued_at, l.revoked_at, "
            "CASE WHEN l.revoked_at IS NOT NULL THEN 'revoked' "
            "WHEN l.valid_until <= pg_catalog.now() THEN 'expired' ELSE 'live' END, "
            "EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = l.login) "
            "FROM {} l ORDER BY l.tenant, l.login"
        ).format(sql.Identifier(schema, "tenant_logins"))
    ).fetchall()
    return [LoginInfo(*r) for r in rows]


def _retire(
    conn: psycopg.Connection[Any], logins: list[tuple[str, str]], schema: str
) -> RevokeResult:
    """Revoke *logins* ((login, group) pairs): registry first, then the roles."""
    result = RevokeResult(logins=[login for login, _ in logins])
    if not logins:
        return result
    names = [login for login, _ in logins]
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "UPDATE {} SET revoked_at = coalesce(revoked_at, pg_catalog.now()) "
                "WHERE login = ANY(%s)"
            ).format(sql.Identifier(schema, "tenant_logins")),
            (names,),
        )
    # Open sessions lose their scope through the registry above; end them where allowed.
    if _can_signal(conn):
        rows = conn.execute(
            "SELECT pg_catalog.pg_terminate_backend(a.pid) FROM pg_catalog.pg_stat_activity a "
            "WHERE a.usename = ANY(%s) AND a.pid <> pg_catalog.pg_backend_pid()",
            (names,),
        ).fetchall()
        result.terminated = sum(1 for (ok,) in rows if ok)
    for login, group in logins:
        ident = sql.Identifier(login)
        with conn.transaction():
            exists = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (login,)
            ).fetchone()
            if exists is None:
                continue
            _serialize(conn, schema)
            conn.execute(
                sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD NULL VALID UNTIL '-infinity'").format(ident)
            )
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), ident))
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP ROLE {}").format(ident))
            result.dropped.append(login)
        except psycopg.errors.DependentObjectsStillExist:
            result.disabled.append(login)
    log.info("revoked %d tenant login(s)", len(result.logins))
    return result


def _can_signal(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT r.rolsuper OR pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'USAGE') "
        "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"
    ).fetchone()
    return bool(row and row[0])


def revoke_credentials(
    conn: psycopg.Connection[Any],
    tenant: object,
    *,
    tenant_kind: TenantKind | None = None,
    schema: str = "tenantguard",
) -> RevokeResult:
    """Revoke every login of *tenant*: their scope ends at once, the roles are dropped.

    A role that owns objects (say a temporary table of a session still open) cannot be
    dropped: it is made NOLOGIN without password or membership instead.
    """
    tenant_text = str(parse_tenant_id(tenant, tenant_kind))
    if not scope_installed(conn, schema):
        return RevokeResult()
    rows = conn.execute(
        sql.SQL("SELECT login::text, group_role::text FROM {} WHERE tenant = %s").format(
            sql.Identifier(schema, "tenant_logins")
        ),
        (tenant_text,),
    ).fetchall()
    return _retire(conn, [(str(a), str(b)) for a, b in rows], schema)


def sweep_credentials(
    conn: psycopg.Connection[Any], *, schema: str = "tenantguard"
) -> RevokeResult:
    """Drop the roles of expired or revoked logins that still exist."""
    if not scope_installed(conn, schema):
        return RevokeResult()
    rows = conn.execute(
        sql.SQL(
            "SELECT l.login::text, l.group_role::text FROM {} l "
            "WHERE (l.valid_until <= pg_catalog.now() OR l.revoked_at IS NOT NULL) "
            "AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = l.login)"
        ).format(sql.Identifier(schema, "tenant_logins"))
    ).fetchall()
    return _retire(conn, [(str(a), str(b)) for a, b in rows], schema)
