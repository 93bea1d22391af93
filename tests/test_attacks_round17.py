"""The seventeenth adversarial review, each attack next to its control.

1. A login that owns a table without a tenant column (a lookup table it created before
   tenantguard): ``ENABLE``/``FORCE ROW LEVEL SECURITY`` and ``CREATE POLICY`` are the
   owner's DDL, no CREATE privilege needed; the policy ran inside tenant 2's ``SELECT``,
   with tenant 2 bound, and copied tenant 2's invoices into a large object tenant 1 read.
   The pool now refuses a login that owns (or may add triggers to) any object outside the
   protected tables (control: the check without that column).
2. A member of ``pg_read_all_data`` on a signed install read the signing key table (no RLS)
   and signed a context for tenant 2. The pool refuses members of ``pg_read_all_data`` /
   ``pg_write_all_data`` (control: the role check without them).
3. ``GRANT EXECUTE ON FUNCTION pg_read_binary_file(text)`` (PostgreSQL's documented
   alternative to the pg_*_server_files roles): tenant 1 read the current WAL segment and
   found the row tenant 2 had just committed. The pool refuses such a login and the
   classifier refuses the server file functions (controls: each defence removed).
4. ``SET LOCAL seed = 0.5`` / ``set_config('seed', ...)``: the setting's assign hook calls
   setseed(), refused since the fourth review; tenant 2's later random() values were the
   predicted ones. Refused now (control: the classifier without it).
5. The pg_sequences view read by name through ``table_to_xml('pg_catalog.pg_sequences',
   ...)``: refused as the view is (control: sent).
6. Per-tenant logins: a text tenant id equal to another tenant's role-name digest took that
   tenant's role names. The digest form now has a character no plain id has.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from conftest import Scratch, build_saas, make_scratch
from tenantguard import TenantPool, tenant
from tenantguard.admin import create_key
from tenantguard.admin import credentials as creds
from tenantguard.core import classify, rolecheck
from tenantguard.core.signing import SigningKey, sign_context
from tenantguard.drivers.psycopg import _pool_base
from tenantguard.errors import UnsafeRoleError, UnsupportedOperation


@pytest.fixture(scope="module")
def s17_signed(server_dsn: str) -> Iterator[Scratch]:
    gen = make_scratch(server_dsn)
    s = next(gen)
    build_saas(s, signed=True)
    yield s
    next(gen, None)


def _without_column(monkeypatch: pytest.MonkeyPatch, start: str) -> None:
    """The control: the role check query with the ARRAY(...) that begins with *start*
    replaced by an empty array."""
    query = rolecheck.ROLE_CHECK_QUERY
    i = query.index(start)
    depth = 0
    for j in range(i, len(query)):  # the end of that ARRAY(...) expression
        depth += query[j] == "("
        depth -= query[j] == ")"
        if depth == 0 and query[j] == ")":
            break
    monkeypatch.setattr(
        _pool_base, "ROLE_CHECK_QUERY", query[:i] + "ARRAY[]::text[]" + query[j + 1 :]
    )


# --- 1. owned objects ------------------------------------------------------------------


@pytest.fixture
def owned_plans(saas: Scratch) -> Iterator[None]:
    with saas.admin() as a:
        a.execute(
            sql.SQL(
                "CREATE TABLE app.plans (id int PRIMARY KEY, name text); "
                "INSERT INTO app.plans VALUES (1, 'free'), (2, 'pro'); "
                "ALTER TABLE app.plans OWNER TO {}"
            ).format(sql.Identifier(saas.app_role))
        )
    try:
        yield
    finally:
        with saas.admin() as a:
            a.execute("DROP TABLE app.plans")
            a.execute(
                sql.SQL(
                    "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata "
                    "WHERE lomowner = {}::regrole"
                ).format(sql.Literal(saas.app_role))
            )


PLANT = [
    "ALTER TABLE app.plans ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE app.plans FORCE ROW LEVEL SECURITY",
    "CREATE POLICY r17 ON app.plans USING ("
    " (SELECT pg_catalog.lo_from_bytea(0, pg_catalog.convert_to('stolen:' || "
    "  (SELECT pg_catalog.string_agg(tenant_id || '/' || note, ',') FROM app.invoices),"
    "  'UTF8'))) IS NOT NULL)",
]


def test_a_login_that_owns_a_table_is_refused(saas: Scratch, owned_plans: None) -> None:
    with pytest.raises(UnsafeRoleError) as err:
        TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True)
    assert "table app.plans" in str(err.value)
    assert f'REASSIGN OWNED BY "{saas.app_role}" TO CURRENT_USER;' in "\n".join(err.value.fixes)


def test_control_an_owned_table_carries_a_policy_into_the_next_tenants_select(
    saas: Scratch, owned_plans: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_column(monkeypatch, "ARRAY(SELECT o.what FROM (")
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c:
            for q in PLANT:
                c.execute(q)
        with tenant(2), pool.connection() as c:  # tenant 2's ordinary request
            assert len(c.execute("SELECT name FROM app.plans").fetchall()) == 2
        with tenant(1), pool.connection() as c:
            loot = c.execute(
                "SELECT pg_catalog.convert_from(pg_catalog.lo_get(m.oid), 'UTF8') "
                "FROM pg_catalog.pg_largeobject_metadata m "
                "WHERE m.lomowner = (SELECT oid FROM pg_catalog.pg_roles "
                "WHERE rolname = current_user)"
            ).fetchall()
    assert any("2/tenant 2" in text for (text,) in loot)


# --- 2. pg_read_all_data on a signed install ------------------------------------------


@pytest.fixture
def reads_all(s17_signed: Scratch) -> Iterator[SigningKey]:
    app = sql.Identifier(s17_signed.app_role)
    with s17_signed.admin() as a:
        key = create_key(a)
        a.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(app))
    try:
        yield key
    finally:
        with s17_signed.admin() as a:
            a.execute(sql.SQL("REVOKE pg_read_all_data FROM {}").format(app))
            a.execute("DELETE FROM tenantguard_keys.signing_keys")


def test_a_read_all_data_member_is_refused(s17_signed: Scratch, reads_all: SigningKey) -> None:
    with pytest.raises(UnsafeRoleError, match="pg_read_all_data"):
        TenantPool(s17_signed.app_dsn, min_size=1, max_size=1, signing_key=reads_all, open=True)


def test_control_a_read_all_data_member_forges_another_tenants_context(
    s17_signed: Scratch, reads_all: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rolecheck, "ALL_DATA_ROLES", ())
    with TenantPool(
        s17_signed.app_dsn, min_size=1, max_size=1, signing_key=reads_all, open=True
    ) as pool:
        with tenant(1), pool.connection() as c:
            row: Any = c.execute(
                "SELECT key_id, ipad FROM tenantguard_keys.signing_keys WHERE retired_at IS NULL"
            ).fetchone()
            secret = bytes(b ^ 0x36 for b in bytes(row[1]))[:32]
            forged = sign_context(
                SigningKey(row[0], secret), "2", None, expires_at=int(time.time()) + 600
            )
            with c.transaction():
                c.execute("SELECT set_config('app.tenant_id', %s, true)", (forged,))
                rows = c.execute("SELECT DISTINCT tenant_id FROM app.invoices").fetchall()
    assert rows == [(2,)]


# --- 3. server file functions ------------------------------------------------------------


@pytest.fixture
def reads_files(saas: Scratch) -> Iterator[None]:
    app = sql.Identifier(saas.app_role)
    with saas.admin() as a:
        a.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO {}").format(
                app
            )
        )
    try:
        yield
    finally:
        with saas.admin() as a:
            a.execute(
                sql.SQL(
                    "REVOKE EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) FROM {}"
                ).format(app)
            )
            a.execute("DELETE FROM app.invoices WHERE note = 'globex-secret-7f3a'")


def test_a_login_with_a_server_file_function_is_refused(saas: Scratch, reads_files: None) -> None:
    with pytest.raises(UnsafeRoleError, match=r"pg_read_binary_file\(text\)"):
        TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True)


WAL = "SELECT 'pg_wal/' || pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn())"


def test_server_file_functions_are_refused_before_sending(
    saas: Scratch, reads_files: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rolecheck, "SERVER_FILE_FUNCTIONS", ())  # the role check's control
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c:
            seg: Any = c.execute(WAL).fetchone()
            with pytest.raises(UnsupportedOperation, match="files on the database server"):
                c.execute("SELECT pg_read_binary_file(%s)", (seg[0],))


def test_control_a_server_file_function_reads_the_other_tenants_row_from_the_wal(
    saas: Scratch, reads_files: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rolecheck, "SERVER_FILE_FUNCTIONS", ())
    monkeypatch.setattr(classify, "_SERVER_FILE_FUNCS", set())
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(2), pool.connection() as c:
            c.execute(
                "INSERT INTO app.invoices (tenant_id, amount, note) "
                "VALUES (2, 999, 'globex-secret-7f3a')"
            )
        with tenant(1), pool.connection() as c:
            seg: Any = c.execute(WAL).fetchone()
            data: Any = c.execute("SELECT pg_read_binary_file(%s)", (seg[0],)).fetchone()
    assert b"globex-secret-7f3a" in bytes(data[0])


# --- 4. the seed setting ---------------------------------------------------------------

SEED = ["SET LOCAL seed = 0.5", "SELECT set_config('seed', '0.5', true)"]


def _predicted(s: Scratch) -> list[float]:
    with s.app() as c:
        c.execute("SELECT setseed(0.5)")
        return [float(c.execute("SELECT random()").fetchone()[0]) for _ in range(3)]  # type: ignore[index]


@pytest.mark.parametrize("spelling", SEED)
def test_the_seed_setting_is_refused(saas: Scratch, spelling: str) -> None:
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c, c.transaction():
            with pytest.raises(UnsupportedOperation, match="seed of random"):
                c.execute(spelling)


@pytest.mark.parametrize("spelling", SEED)
def test_control_the_seed_setting_predicts_the_next_tenants_random(
    saas: Scratch, spelling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classify, "_SEED_SETTING", "not-seed")
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c, c.transaction():
            c.execute(spelling)
        with tenant(2), pool.connection() as c:
            got = [float(c.execute("SELECT random()").fetchone()[0]) for _ in range(3)]  # type: ignore[index]
    assert got == _predicted(saas)


# --- 5. pg_sequences by name -------------------------------------------------------------

XML = "SELECT table_to_xml('pg_catalog.pg_sequences', true, false, '')"


def test_pg_sequences_by_name_is_refused(saas: Scratch) -> None:
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c:
            with pytest.raises(UnsupportedOperation, match="pg_sequences"):
                c.execute(XML)


def test_control_pg_sequences_by_name_is_sent(
    saas: Scratch, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    monkeypatch.setattr(classify, "_REFUSED_RELATIONS", {})
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c:
            try:
                out: Any = c.execute(XML).fetchone()
            except psycopg.errors.FeatureNotSupported:  # a server built without libxml
                return  # sent: the server, not tenantguard, refused it
    assert "last_value" in str(out[0])


# --- 6. credential role names -------------------------------------------------------------


def test_no_tenant_id_takes_another_tenants_role_names() -> None:
    victim = "Acme Corp"
    digest = creds._role_part(victim)
    assert not creds._PLAIN_TENANT.fullmatch(digest)  # no plain id is ever the digest
    squat = digest.replace("_", "")  # the earlier form of the digest: a valid plain id
    assert creds._PLAIN_TENANT.fullmatch(squat) and creds._role_part(squat) == squat != digest
