"""Per-tenant logins (``tenantguard credentials``), attacked for real.

Passwords and ``VALID UNTIL`` are only checked under password authentication, and
the suite's servers trust local logins. So the authentication tests run on an
embedded PostgreSQL of their own whose ``pg_hba.conf`` asks every role but the
bootstrap superuser for scram-sha-256, and a control switches that server to
``trust`` to show the same logins then get in (so the test's server really checks).
The isolation tests run there and on the suite's server (PostgreSQL 15 or 18).
Everything tenantguard does is done by a managed-style administrator:
``NOSUPERUSER CREATEROLE``, member of the owner role.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from _access import (
    ADMIN_PASSWORD,
    APP_PASSWORD,
    Access,
    build_access,
    drop_tenant_roles,
    password_access,
    password_server,
    set_hba,
)
from tenantguard.admin.credentials import (
    issue_credential,
    list_credentials,
    revoke_credentials,
    sweep_credentials,
)
from tenantguard.errors import UsageError


@pytest.fixture(scope="module")
def pw_server() -> Iterator[tuple[str, object]]:
    with password_server() as (dsn, hba):
        yield dsn, hba


@pytest.fixture(scope="module")
def pw(pw_server) -> Iterator[Access]:  # type: ignore[no-untyped-def]
    """The password-checking server: scram-sha-256 for every role but the superuser."""
    with password_access(*pw_server) as access:
        yield access


@pytest.fixture(scope="module")
def suite(scratch) -> Iterator[Access]:  # type: ignore[no-untyped-def]
    """The suite's own server (trust authentication): policies only, not passwords."""
    access = build_access(scratch)
    try:
        yield access
    finally:
        drop_tenant_roles(access)


@pytest.fixture(params=["password-server", "suite-server"])
def db(request: pytest.FixtureRequest) -> Access:
    return request.getfixturevalue("pw" if request.param == "password-server" else "suite")  # type: ignore[no-any-return]


def _tenants(
    conn: psycopg.Connection[tuple[object, ...]], table: str = "app.invoices"
) -> dict[int, int]:
    rows = conn.execute(f"SELECT tenant_id, count(*) FROM {table} GROUP BY 1").fetchall()
    return {int(t): int(n) for t, n in rows}  # type: ignore[call-overload]


# --------------------------------------------------------------------------- isolation


def test_a_credential_cannot_read_or_write_another_tenant(db: Access) -> None:
    with db.admin() as admin:
        a = issue_credential(admin, 1, ttl="15m", slot="iso")
    with db.connect(a.user, a.password) as conn:
        assert conn.execute("SELECT session_user").fetchone() == (a.user,)
        assert _tenants(conn) == {1: 2}
        # The pool model's attack: set the tenant setting to 2. The login's scope ignores it.
        conn.execute("SELECT set_config('app.tenant_id', '2', false)")
        assert _tenants(conn) == {1: 2}
        assert conn.execute("SELECT count(*) FROM app.invoices WHERE tenant_id = 2").fetchone() == (
            0,
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (2, 1)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE app.invoices SET tenant_id = 2")
        assert conn.execute("UPDATE app.invoices SET note = 'x' WHERE tenant_id = 2").rowcount == 0
        assert conn.execute("DELETE FROM app.invoices WHERE tenant_id = 2").rowcount == 0
        # No SET ROLE path: not a member of another tenant's group, nor of the app role.
        for role in (db.s.app_role, db.s.owner_role):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        # Its own tenant stays writable (the credential is not simply powerless).
        conn.execute("INSERT INTO app.invoices (tenant_id, amount, note) VALUES (1, 5, 'own')")
        assert conn.execute("DELETE FROM app.invoices WHERE note = 'own'").rowcount == 1
    with db.superuser() as su:
        assert _tenants(su) == {1: 2, 2: 4, 3: 6}
        assert su.execute("SELECT count(*) FROM app.invoices WHERE note = 'x'").fetchone() == (0,)


def test_control_the_pool_login_becomes_another_tenant_by_setting_it(db: Access) -> None:
    # The same attack on the shared pool login succeeds: that is what the logins stop.
    with db.connect(db.s.app_role, APP_PASSWORD) as conn:
        conn.execute("SELECT set_config('app.tenant_id', '2', false)")
        assert _tenants(conn) == {2: 4}


def test_set_role_to_another_tenants_group_is_refused(db: Access) -> None:
    with db.admin() as admin:
        a = issue_credential(admin, 1, ttl="15m", slot="grp")
        b = issue_credential(admin, 2, ttl="15m", slot="grp")
        b_group = admin.execute(
            "SELECT group_role::text FROM tenantguard.tenant_logins WHERE login = %s", (b.user,)
        ).fetchone()
    assert b_group is not None
    with db.connect(a.user, a.password) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(str(b_group[0]))))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(b.user)))


def test_login_is_a_member_of_its_tenant_group_only(db: Access) -> None:
    with db.admin() as admin:
        a = issue_credential(admin, 3, ttl="15m", slot="mem")
        rows = admin.execute(
            "SELECT r.rolname::text FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles me ON me.oid = m.member WHERE me.rolname = %s",
            (a.user,),
        ).fetchall()
        group = admin.execute(
            "SELECT group_role::text FROM tenantguard.tenant_logins WHERE login = %s", (a.user,)
        ).fetchone()
        assert group is not None and rows == [(group[0],)]
        parents = admin.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles me ON me.oid = m.member "
            "WHERE me.rolname = %s",
            (group[0],),
        ).fetchone()
        assert parents == (0,)
        attrs = admin.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcanlogin, rolvaliduntil IS NOT NULL "
            "FROM pg_roles WHERE rolname = %s",
            (a.user,),
        ).fetchone()
        assert attrs == (False, False, False, True, True)
        if admin.info.server_version >= 160000:
            opts = admin.execute(
                "SELECT m.inherit_option, m.set_option, m.admin_option FROM pg_auth_members m "
                "JOIN pg_roles me ON me.oid = m.member WHERE me.rolname = %s",
                (a.user,),
            ).fetchone()
            assert opts == (True, False, False)
    with db.connect(a.user, a.password) as conn:
        if conn.info.server_version >= 160000:  # SET FALSE: not even its own group
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(group[0])))


# --------------------------------------------------------------------------- authentication


def test_wrong_password_is_refused(pw: Access) -> None:
    with pw.admin() as admin:
        a = issue_credential(admin, 1, ttl="15m", slot="wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pw.connect(a.user, a.password + "x")
    with pytest.raises(psycopg.OperationalError):
        pw.connect(a.user, None)
    with pw.connect(a.user, a.password) as conn:  # control: the right one gets in
        assert _tenants(conn) == {1: 2}


def test_refresh_replaces_the_password(pw: Access) -> None:
    with pw.admin() as admin:
        old = issue_credential(admin, 2, ttl="15m", slot="refr")
        with pw.connect(old.user, old.password) as before:
            new = issue_credential(admin, 2, ttl="15m", slot="refr")
            assert new.user == old.user and new.password != old.password
            assert new.valid_until > old.valid_until
            assert _tenants(before) == {2: 4}  # an open connection keeps working
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pw.connect(old.user, old.password)
    with pw.connect(new.user, new.password) as conn:
        assert _tenants(conn) == {2: 4}


def test_expired_credential_cannot_log_in_and_trust_would_let_it_in(pw: Access, pw_server) -> None:  # type: ignore[no-untyped-def]
    with pw.admin() as admin:
        a = issue_credential(admin, 3, ttl=2, slot="exp")
    early = pw.connect(a.user, a.password)  # opened while valid
    assert _tenants(early) == {3: 6}
    time.sleep(2.5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pw.connect(a.user, a.password)
    # The connection opened before the end keeps its session, but its scope ended with it.
    assert _tenants(early) == {}
    early.close()
    # Control: the same server with trust authentication lets the expired login in, and
    # any password too; so the refusals above are the server checking, not a broken login.
    dsn, hba = pw_server
    set_hba(dsn, hba, trusted=[], method="trust")
    try:
        with pw.connect(a.user, "not-the-password") as conn:
            assert conn.execute("SELECT session_user").fetchone() == (a.user,)
            assert _tenants(conn) == {}  # the registry still ends its scope
    finally:
        set_hba(dsn, hba, trusted=[pw.superuser_name], method="scram-sha-256")
    with pytest.raises(psycopg.OperationalError):
        pw.connect(a.user, "not-the-password")


def test_revoke_ends_the_tenant_logins(pw: Access) -> None:
    with pw.admin() as admin:
        a = issue_credential(admin, 2, ttl="15m", slot="rev")
        other = issue_credential(admin, 1, ttl="15m", slot="rev")
        conn = pw.connect(a.user, a.password)
        assert _tenants(conn) == {2: 4}
        res = revoke_credentials(admin, 2)
        assert a.user in res.logins and other.user not in res.logins
        assert a.user in res.dropped + res.disabled
        states = {i.login: i.state for i in list_credentials(admin)}
        assert states[a.user] == "revoked" and states[other.user] == "live"
    # The open connection reaches nothing (its role is gone: every query fails).
    with pytest.raises(psycopg.Error):
        _tenants(conn)
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        pw.connect(a.user, a.password)
    with pw.connect(other.user, other.password) as still:  # control: tenant 1's login works
        assert _tenants(still) == {1: 2}


def test_sweep_drops_expired_logins(pw: Access) -> None:
    with pw.admin() as admin:
        short = issue_credential(admin, 1, ttl=1, slot="swp")
        long = issue_credential(admin, 1, ttl="15m", slot="keep")
        time.sleep(1.5)
        res = sweep_credentials(admin)
        assert short.user in res.dropped and long.user not in res.logins
        roles = {
            r[0]
            for r in admin.execute(
                "SELECT rolname::text FROM pg_roles WHERE rolname = ANY(%s)",
                ([short.user, long.user],),
            ).fetchall()
        }
        assert roles == {long.user}


# --------------------------------------------------------------------------- secrets


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantguard.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_issue_json_and_no_password_on_stderr(pw: Access) -> None:
    r = _run_cli(
        "credentials", "issue", "3", "--dsn", pw.admin_dsn, "--ttl", "15m", "--format", "json"
    )
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert set(payload) == {"user", "password", "valid_until", "dsn"}
    assert len(payload["password"]) >= 32
    assert payload["password"] not in r.stderr
    assert payload["password"] not in payload["dsn"]
    assert ADMIN_PASSWORD not in payload["dsn"]  # nor the administrator's
    with psycopg.connect(payload["dsn"], password=payload["password"], autocommit=True) as conn:
        assert _tenants(conn) == {3: 6}
    listed = _run_cli("credentials", "list", "--dsn", pw.admin_dsn, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert payload["password"] not in listed.stdout + listed.stderr
    assert payload["user"] in {row["user"] for row in json.loads(listed.stdout)}
    bad = _run_cli("credentials", "issue", "3", "--dsn", pw.admin_dsn, "--ttl", "forever")
    assert bad.returncode == 2 and "invalid TTL" in bad.stderr


def test_nothing_logs_a_password(pw: Access, caplog: pytest.LogCaptureFixture) -> None:
    from tenantguard import CredentialPool

    caplog.set_level(logging.DEBUG)
    with pw.admin() as admin:
        cred = issue_credential(admin, 1, ttl="15m", slot="log")
        assert cred.password not in repr(cred) and cred.password not in str(cred)

        class Stale:
            def issue(self, tenant: str) -> object:
                # A wrong password: the pool's connection attempt fails.
                from dataclasses import replace

                return replace(cred, password=cred.password[::-1])

        pool = CredentialPool(pw.s.admin_dsn, source=Stale())  # type: ignore[arg-type]
        with pytest.raises(Exception) as info:
            with pool.connection(1):
                pass
        assert cred.password[::-1] not in str(info.value)
        pool.close()
        revoke_credentials(admin, 1)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "issued credential" in logged  # the log did record the issue...
    assert cred.password not in logged and cred.password[::-1] not in logged  # ...not the secret


def test_issue_refuses_bad_input(suite: Access) -> None:
    with suite.admin() as admin:
        with pytest.raises(UsageError, match="TTL"):
            issue_credential(admin, 1, ttl="0s")
        with pytest.raises(UsageError, match="TTL"):
            issue_credential(admin, 1, ttl="30d")
        with pytest.raises(UsageError, match="slot"):
            issue_credential(admin, 1, slot="Bad Slot")
        with pytest.raises(UsageError):
            issue_credential(admin, "abc", tenant_kind="bigint")


def test_credential_pool_logs_in_with_real_passwords(pw: Access) -> None:
    from tenantguard import AdminCredentialSource, CredentialPool

    source = AdminCredentialSource(pw.admin_dsn, ttl="15m", slot="cpool")
    # The superuser DSN gives host and database; the pool replaces user and password.
    with CredentialPool(pw.s.admin_dsn, source=source, max_size=2) as pool:
        for t, n in ((1, 2), (2, 4)):
            with pool.connection(t) as conn:
                assert _tenants(conn) == {t: n}
        pool.revoke(2)


def test_registry_row_of_a_live_login_cannot_be_deleted(suite: Access) -> None:
    # Without its row a login would fall back to the setting; the registry refuses.
    with suite.admin() as admin:
        a = issue_credential(admin, 2, slot="keep")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="still exists"):
            admin.execute("DELETE FROM tenantguard.tenant_logins WHERE login = %s", (a.user,))
        revoke_credentials(admin, 2)
        with admin.transaction(force_rollback=True):  # once the role is gone, it may go
            n = admin.execute(
                "DELETE FROM tenantguard.tenant_logins WHERE login = %s", (a.user,)
            ).rowcount
        assert n == 1
