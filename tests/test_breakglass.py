"""Break-glass access (``tenantguard admin``), attacked for real.

Grants are created by a managed-style administrator (NOSUPERUSER CREATEROLE, member
of the owner role); the grantee is a dedicated LOGIN role; the superuser only plays
the attacker who bypasses the log's triggers to tamper with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from _access import APP_PASSWORD, Access, build_access, drop_tenant_roles
from conftest import Scratch, make_scratch
from tenantguard.admin.breakglass import grant_access, read_log, revoke_access, verify_log


@pytest.fixture(scope="module")
def db(scratch) -> Iterator[Access]:  # type: ignore[no-untyped-def]
    access = build_access(scratch)
    try:
        yield access
    finally:
        drop_tenant_roles(access)


@pytest.fixture
def scratch_factory(server_dsn: str) -> Iterator[Callable[[], Access]]:
    """Fresh protected databases, for tests that need an empty log."""
    made: list[tuple[Iterator[Scratch], Access]] = []

    def make() -> Access:
        gen = make_scratch(server_dsn)
        access = build_access(next(gen))
        made.append((gen, access))
        return access

    yield make
    for gen, access in made:
        drop_tenant_roles(access)
        for _ in gen:  # runs make_scratch's cleanup
            pass


_counter = iter(range(1, 1000))


@pytest.fixture
def support(db: Access) -> str:
    """A fresh dedicated LOGIN role for one test (dropped with the scratch roles)."""
    role = f"tg_support{next(_counter)}_{db.s.suffix}"
    with db.superuser() as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    return role


def _tenants(conn: psycopg.Connection[tuple[object, ...]]) -> dict[int, int]:
    rows = conn.execute("SELECT tenant_id, count(*) FROM app.invoices GROUP BY 1").fetchall()
    return {int(t): int(n) for t, n in rows}  # type: ignore[call-overload]


def _as(conn: psycopg.Connection[tuple[object, ...]], tenant: int) -> dict[int, int]:
    """Bind *tenant* on the session (a break-glass login acts as one granted tenant at a time)."""
    conn.execute("SELECT set_config('app.tenant_id', %s, false)", (str(tenant),))
    return _tenants(conn)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantguard.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_read_grant_admits_only_the_granted_tenants(db: Access, support: str) -> None:
    with db.superuser() as su:  # before any grant: no table privileges at all
        su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(support)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            su.execute("SELECT 1 FROM app.invoices")
    with db.admin() as admin:
        g = grant_access(admin, support, [2], reason="invoice dispute", ticket="SUP-1", ttl="10m")
    assert g.tenants == ("2",) and not g.write
    with db.connect(support) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no tenant is bound"):
            _tenants(conn)  # nothing bound: refused, as for the pool login
        assert _as(conn, 2) == {2: 4}
        # Binding a tenant outside its grants reaches nothing: the grant, not the setting, decides.
        assert _as(conn, 3) == {}
        assert conn.execute("SELECT count(*) FROM app.users").fetchone() == (0,)
        assert _as(conn, 1) == {}


def test_expired_grant_is_refused(db: Access, support: str) -> None:
    with db.admin() as admin:
        grant_access(admin, support, [3], reason="report", ticket="SUP-2", ttl=2)
    with db.connect(support) as conn:
        assert _as(conn, 3) == {3: 6}  # control: live, it reads
        time.sleep(2.5)
        assert _tenants(conn) == {}  # expired: the same session, the same query, nothing
    with db.connect(support) as conn:
        assert _as(conn, 3) == {}
    with db.admin() as admin:
        states = [r.state for r in read_log(admin) if r.grantee == support]
    assert states == ["expired"]


def test_scope_is_enforced_per_tenant_and_per_command(db: Access, support: str) -> None:
    with db.admin() as admin:
        grant_access(admin, support, [2], reason="look", ticket="SUP-3", ttl="10m")
        grant_access(admin, support, [3], reason="fix", ticket="SUP-4", ttl="10m", write=True)
    with db.connect(support) as conn:
        assert _as(conn, 1) == {}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (1, 1)")
        assert conn.execute("DELETE FROM app.invoices WHERE tenant_id = 1").rowcount == 0
        # Tenant 2 is read-only, although the role holds DML privileges (from the write grant).
        assert _as(conn, 2) == {2: 4}
        assert conn.execute("UPDATE app.invoices SET note = 'x' WHERE tenant_id = 2").rowcount == 0
        assert conn.execute("DELETE FROM app.invoices WHERE tenant_id = 2").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO app.invoices (tenant_id, amount) VALUES (2, 1)")
        # Tenant 3 is writable (the control), but its rows cannot be moved to tenant 2.
        assert _as(conn, 3) == {3: 6}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE app.invoices SET tenant_id = 2 WHERE tenant_id = 3")
        with conn.transaction():
            conn.execute("INSERT INTO app.invoices (tenant_id, amount, note) VALUES (3, 1, 'bg')")
            assert (
                conn.execute("UPDATE app.invoices SET note = 'bg2' WHERE note = 'bg'").rowcount == 1
            )
            assert conn.execute("DELETE FROM app.invoices WHERE note = 'bg2'").rowcount == 1
    with db.superuser() as su:
        assert _tenants(su) == {1: 2, 2: 4, 3: 6}


def test_revoke_ends_a_grant(db: Access, support: str) -> None:
    runner_dsn = db.admin_dsn
    r = _run_cli(
        "admin", "grant", "--dsn", runner_dsn, "--to", support, "--tenant", "1", "--tenant", "2",
        "--reason", "migration check", "--ticket", "OPS-7", "--ttl", "10m",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    seq = json.loads(r.stdout)["grant"]
    with db.connect(support) as conn:
        assert _as(conn, 1) == {1: 2}
        assert _as(conn, 2) == {2: 4}
        r = _run_cli("admin", "revoke", str(seq), "--dsn", runner_dsn, "--reason", "done")
        assert r.returncode == 0, r.stderr
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _tenants(conn)  # the open session loses it at once (privileges and scope)
    with db.admin() as admin:
        rows = read_log(admin)
    assert [(x.action, x.grant_seq) for x in rows if x.grantee == support] == [
        ("grant", None),
        ("revoke", seq),
    ]
    with db.connect(support) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # privileges went too
            conn.execute("SELECT 1 FROM app.invoices")


def test_the_app_pool_login_cannot_use_the_admin_path(db: Access, support: str) -> None:
    app = db.s.app_role
    with db.admin() as admin:
        grant_access(admin, support, [3], reason="audit", ticket="SUP-5", ttl="10m")
        # The administrator cannot hand a grant to the app's login: it already uses the tables.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="already has privileges"):
            grant_access(admin, app, [3], reason="audit", ticket="SUP-5", ttl="10m")
    with db.connect(app, APP_PASSWORD) as conn:
        # It cannot create a grant, read or write the log or the registry, or become the
        # support role.
        for attack in (
            "SELECT tenantguard.breakglass_grant(current_user, ARRAY['3'], true, 'x', 'y', '1h')",
            "SELECT tenantguard._bg_append('grant', NULL, current_user, ARRAY['3'], true, 'x',"
            " 'y', now() + interval '1h')",
            "SELECT tenantguard._bg_sync_privileges(current_user)",
            "SELECT * FROM tenantguard.breakglass_log",
            "DELETE FROM tenantguard.breakglass_log",
            "SELECT * FROM tenantguard.tenant_logins",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attack)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(support)))
        # The one helper it may call answers for its own session: no grant covers it.
        row = conn.execute("SELECT tenantguard._bg_admits('3', false)").fetchone()
        assert row == (False,)
    with db.connect(support) as conn:  # control: the grantee's own session reaches tenant 3
        assert row is not None
        assert conn.execute("SELECT tenantguard._bg_admits('3', false)").fetchone() == (True,)
        assert _as(conn, 3) == {3: 6}


def test_grant_checks_its_input(db: Access, support: str) -> None:
    with db.admin() as admin:
        for kwargs, message in (
            ({"reason": " "}, "reason"),
            ({"ticket": ""}, "ticket"),
        ):
            args = {"reason": "r", "ticket": "t", "ttl": "10m", **kwargs}
            with pytest.raises(Exception, match=message):
                grant_access(admin, support, [1], **args)  # type: ignore[arg-type]
        with pytest.raises(Exception, match="TTL"):
            grant_access(admin, support, [1], reason="r", ticket="t", ttl="25h")
        with pytest.raises(Exception, match="does not exist"):
            grant_access(admin, f"tg_nobody_{db.s.suffix}", [1], reason="r", ticket="t")
        # The function itself refuses what the library would (called directly).
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="reason"):
            admin.execute(
                "SELECT tenantguard.breakglass_grant(%s, ARRAY['1'], false, '', 't', '1h')",
                (support,),
            )
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="TTL"):
            admin.execute(
                "SELECT tenantguard.breakglass_grant(%s, ARRAY['1'], false, 'r', 't', '2 days')",
                (support,),
            )
        strong = f"tg_strong_{db.s.suffix}"
        with db.superuser() as su:
            su.execute(sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS").format(sql.Identifier(strong)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="NOBYPASSRLS"):
            grant_access(admin, strong, [1], reason="r", ticket="t")


def test_a_grant_cannot_exist_without_its_log_row(db: Access, support: str) -> None:
    with db.admin() as admin:
        before = len(read_log(admin))
        # Rolled back: the grant and its log row go together.
        with pytest.raises(RuntimeError), admin.transaction():
            admin.execute(
                "SELECT tenantguard.breakglass_grant(%s, ARRAY['2'], false, 'r', 't', '1h')",
                (support,),
            )
            raise RuntimeError("abort")
        assert len(read_log(admin)) == before
        # A row that does not extend the chain is refused, even from the owner's member.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="hash chain"):
            admin.execute(
                "INSERT INTO tenantguard.breakglass_log (seq, at, actor, action, grantee, tenants,"
                " can_write, reason, ticket, expires_at, prev_hash, hash) VALUES"
                " (%s, now(), current_user, 'grant', %s, ARRAY['2'], true, 'r', 't',"
                " now() + interval '1h', 'x', 'y')",
                (before + 1, support),
            )
        # Nor can the log be changed or emptied.
        if before:
            for attack in (
                "UPDATE tenantguard.breakglass_log SET reason = 'nothing to see'",
                "DELETE FROM tenantguard.breakglass_log",
                "TRUNCATE tenantguard.breakglass_log",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                    admin.execute(attack)
    with db.connect(support) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT 1 FROM app.invoices")


# --------------------------------------------------------------------------- verify


def _tamper(db: Access, statement: str) -> None:
    """The superuser bypasses the triggers (replica mode) and changes the log."""
    with db.superuser() as su, su.transaction():
        su.execute("SET LOCAL session_replication_role = replica")
        su.execute(statement)


def _verify_cli(db: Access) -> subprocess.CompletedProcess[str]:
    return _run_cli("admin", "verify", "--dsn", db.admin_dsn)


def test_verify_detects_edited_deleted_and_reordered_rows(
    scratch_factory: Callable[[], Access],
) -> None:
    db = scratch_factory()
    with db.superuser() as su:
        roles = [f"tg_v{i}_{db.s.suffix}" for i in range(4)]
        for role in roles:
            su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    with db.admin() as admin:
        for i, role in enumerate(roles):
            grant_access(admin, role, [1 + i % 3], reason=f"reason {i}", ticket=f"T-{i}")
        revoke_access(admin, 1, reason="done")
        assert verify_log(admin).intact
    r = _verify_cli(db)
    assert r.returncode == 0 and "intact: 5 row(s)" in r.stdout, r.stdout + r.stderr
    head = r.stdout.split("head ")[1].strip()

    _tamper(db, "UPDATE tenantguard.breakglass_log SET reason = 'nothing to see' WHERE seq = 2")
    r = _verify_cli(db)
    assert r.returncode == 1 and "row #2 was edited" in r.stdout, r.stdout
    _tamper(db, "UPDATE tenantguard.breakglass_log SET reason = 'reason 1' WHERE seq = 2")
    assert _verify_cli(db).returncode == 0  # control: restored, intact again

    _tamper(db, "UPDATE tenantguard.breakglass_log SET tenants = ARRAY['1','2','3'] WHERE seq = 3")
    assert _verify_cli(db).returncode == 1
    _tamper(db, "UPDATE tenantguard.breakglass_log SET tenants = ARRAY['3'] WHERE seq = 3")
    assert _verify_cli(db).returncode == 0

    # Reordered: rows 2 and 3 swap places (seq values swapped).
    swap = (
        "UPDATE tenantguard.breakglass_log SET seq = 1000 WHERE seq = 2; "
        "UPDATE tenantguard.breakglass_log SET seq = 2 WHERE seq = 3; "
        "UPDATE tenantguard.breakglass_log SET seq = 3 WHERE seq = 1000"
    )
    _tamper(db, swap)
    r = _verify_cli(db)
    assert r.returncode == 1 and "does not link" in r.stdout, r.stdout
    _tamper(db, swap)
    assert _verify_cli(db).returncode == 0

    # Deleted: a middle row, then the last one (caught by the anchor recorded earlier).
    _tamper(db, "DELETE FROM tenantguard.breakglass_log WHERE seq = 4")
    r = _verify_cli(db)
    assert r.returncode == 1 and "missing" in r.stdout, r.stdout

    db2 = scratch_factory()
    with db2.superuser() as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"tg_w_{db2.s.suffix}")))
    with db2.admin() as admin:
        grant_access(admin, f"tg_w_{db2.s.suffix}", [1], reason="a", ticket="b")
        grant_access(admin, f"tg_w_{db2.s.suffix}", [2], reason="c", ticket="d")
    r = _run_cli("admin", "verify", "--dsn", db2.admin_dsn)
    anchor = "2:" + r.stdout.split("head ")[1].strip()
    _tamper(db2, "DELETE FROM tenantguard.breakglass_log WHERE seq = 2")
    r = _run_cli("admin", "verify", "--dsn", db2.admin_dsn)
    assert r.returncode == 0  # the tail's deletion leaves a valid, shorter chain...
    r = _run_cli("admin", "verify", "--dsn", db2.admin_dsn, "--anchor", anchor)
    assert r.returncode == 1 and "anchored row #2 is gone" in r.stdout  # ...the anchor sees it
    assert head


def test_verify_cannot_check_is_not_intact(db: Access) -> None:
    r = _run_cli("admin", "verify", "--dsn", db.admin_dsn, "--schema", "nowhere")
    assert r.returncode == 2, r.stdout + r.stderr


def test_admin_log_lists_grants(db: Access, support: str) -> None:
    with db.admin() as admin:
        grant_access(admin, support, [1], reason="listing", ticket="LOG-1", ttl="5m")
    r = _run_cli("admin", "log", "--dsn", db.admin_dsn, "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [x for x in json.loads(r.stdout) if x["to"] == support]
    assert rows and rows[0]["reason"] == "listing" and rows[0]["ticket"] == "LOG-1"
    assert rows[0]["state"] == "live" and rows[0]["actor"] == db.admin_role


def test_a_tenant_pool_logged_in_as_the_grantee_binds_granted_tenants(
    db: Access, support: str
) -> None:
    from tenantguard import TenantPool, tenant

    with db.admin() as admin:
        grant_access(admin, support, [2], reason="report", ticket="REP-1", ttl="10m")
    pool = TenantPool(
        psycopg.conninfo.make_conninfo(db.s.admin_dsn, user=support), min_size=1, max_size=1
    )
    try:
        with tenant(2), pool.connection() as conn:
            assert _tenants(conn) == {2: 4}  # type: ignore[arg-type]
        with tenant(1), pool.connection() as conn:
            assert _tenants(conn) == {}  # type: ignore[arg-type]
    finally:
        pool.close()
