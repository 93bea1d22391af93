"""Helpers for the per-tenant login and break-glass tests.

A managed-PostgreSQL administrator (``NOSUPERUSER CREATEROLE``, member of the owner
role) runs every tenantguard command; the superuser only builds the fixture and
plays the attacker who can bypass triggers when a test needs a tampered log.
"""

from __future__ import annotations

import contextlib
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from conftest import Scratch, _with, build_saas, make_scratch
from tenantguard.admin import protect
from tenantguard.embedded import embedded_postgres


@dataclass
class Access:
    """A scratch database protected with ``--role-scope`` and a managed-style admin."""

    s: Scratch
    admin_role: str  # NOSUPERUSER CREATEROLE, member of the owner role
    admin_dsn: str
    superuser_name: str = ""

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_dsn, autocommit=True)

    def superuser(self) -> psycopg.Connection[tuple[object, ...]]:
        return self.s.admin()

    def connect(
        self, user: str, password: str | None = None
    ) -> psycopg.Connection[tuple[object, ...]]:
        kwargs = {} if password is None else {"password": password}
        return psycopg.connect(_with(self.s.admin_dsn, user=user), autocommit=True, **kwargs)


ADMIN_PASSWORD = "admin-secret-for-tests"
APP_PASSWORD = "app-secret-for-tests"


def build_access(s: Scratch) -> Access:
    build_saas(s)
    admin = f"tg_admin_{s.suffix}"
    with s.admin() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER CREATEROLE NOBYPASSRLS PASSWORD {}").format(
                sql.Identifier(admin), sql.Literal(ADMIN_PASSWORD)
            )
        )
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(s.owner_role), sql.Identifier(admin))
        )
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(s.app_role), sql.Literal(APP_PASSWORD)
            )
        )
    access = Access(s, admin, _with(s.admin_dsn, user=admin, password=ADMIN_PASSWORD))
    with access.admin() as conn:
        # The managed admin protects the tables itself (it is a member of the owner).
        protect(conn, ["app.users", "app.invoices"], role_scope=True)
        role = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert role == (False,)
    return access


@contextlib.contextmanager
def password_server() -> Iterator[tuple[str, pathlib.Path]]:
    """An embedded PostgreSQL of its own; yields its superuser DSN and its pg_hba.conf."""
    with embedded_postgres(prefix="tenantguard-scram-") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SHOW hba_file").fetchone()
        assert row is not None
        yield dsn, pathlib.Path(str(row[0]))


def set_hba(dsn: str, hba: pathlib.Path, *, trusted: list[str], method: str) -> None:
    """Trust *trusted* roles over the socket; ask every other role for *method*; reload."""
    lines = [f"local all {role} trust" for role in trusted]
    lines.append(f"local all all {method}")
    hba.write_text("\n".join(lines) + "\n")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
        # The postmaster rereads pg_hba.conf on SIGHUP; check it took what we wrote.
        rows = conn.execute(
            "SELECT auth_method FROM pg_hba_file_rules WHERE error IS NULL ORDER BY rule_number"
        ).fetchall()
    assert [r[0] for r in rows][-1] == method, rows
    time.sleep(0.3)  # the postmaster applies the reload asynchronously


@contextlib.contextmanager
def password_access(dsn: str, hba: pathlib.Path) -> Iterator[Access]:
    """A scratch database on a :func:`password_server`, which from then on asks every role
    but its superuser for scram-sha-256 (so passwords and ``VALID UNTIL`` are checked)."""
    for s in make_scratch(dsn):
        access = build_access(s)
        with psycopg.connect(dsn) as conn:
            superuser = str(conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
        set_hba(dsn, hba, trusted=[superuser], method="scram-sha-256")
        access.superuser_name = superuser
        try:
            yield access
        finally:
            drop_tenant_roles(access)


def sessions(access: Access, user: str) -> int:
    """How many server sessions *user* has open (pg_stat_activity)."""
    with access.superuser() as su:
        row = su.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (user,)
        ).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def drop_tenant_roles(access: Access) -> None:
    """Drop the per-tenant groups and logins of the scratch database (named tg<db oid>_...)."""
    with access.superuser() as conn:
        row = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        roles = [
            str(r[0])
            for r in conn.execute(
                "SELECT rolname::text FROM pg_roles WHERE rolname LIKE %s ORDER BY rolcanlogin DESC",
                (f"tg{row[0]}\\_%",),
            ).fetchall()
        ]
        for role in roles:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
