"""Signed tenant contexts (install --signed): attacks with arbitrary SQL on a leased
connection, as the application's runtime role, against a real PostgreSQL.

Every attack is run twice: against the signed install (zero rows of tenant 2, every
time) and, as the control, the same goal on an unsigned install, where it succeeds; the
signed-token attacks also have a positive control on the signed install (the same
path with a correctly signed token for tenant 2 does read tenant 2's rows), so none of
these tests can pass by the attack path simply being broken.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerr
from psycopg import sql

from conftest import Scratch, build_saas, make_scratch
from tenantguard import TenantPool, tenant
from tenantguard.admin import create_key, install, protect, retire_key, rotate_key
from tenantguard.core.signing import (
    SignedBinder,
    SigningKey,
    new_key,
    parse_signing_key,
    sign_context,
)
from tenantguard.core.sqlbuild import InstallSpec
from tenantguard.errors import ConfigurationError, InvalidSigningKey, UsageError

B_INVOICES = 4  # tenant 2's invoices in the SaaS fixture


@pytest.fixture(scope="module")
def signed(server_dsn: str) -> Iterator[tuple[Scratch, SigningKey]]:
    for s in make_scratch(server_dsn):
        build_saas(s, signed=True)
        with s.admin() as conn:
            key = create_key(conn)
        yield s, key


@pytest.fixture(scope="module")
def unsigned(server_dsn: str) -> Iterator[Scratch]:
    for s in make_scratch(server_dsn):
        build_saas(s)
        yield s


def _pool(s: Scratch, key: SigningKey | None, *, check_role: bool = True) -> TenantPool:
    return TenantPool(s.app_dsn, min_size=1, max_size=1, signing_key=key, check_role=check_role)


def b_rows_seen(pool: TenantPool, attack: Callable[[psycopg.Connection[Any]], None]) -> int:
    """Lease a connection as tenant 1, let *attack* run arbitrary SQL in a transaction,
    then count tenant 2's invoices visible in that same transaction. A refusal of the
    count by tenantguard (insufficient_privilege) counts as zero rows; an error in the
    attack's own steps fails the test (the attack must really have been made)."""
    with tenant(1), pool.connection() as conn, conn.transaction():
        attack(conn)
        try:
            with conn.transaction():
                row = conn.execute(
                    "SELECT count(*) FROM app.invoices WHERE tenant_id = 2"
                ).fetchone()
        except pgerr.InsufficientPrivilege as exc:
            assert "tenantguard" in str(exc), exc
            return 0
        assert row is not None
        return int(row[0])


def set_setting(value: str, user: str = "") -> Callable[[psycopg.Connection[Any]], None]:
    def attack(conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "SELECT pg_catalog.set_config('app.tenant_id', %s, true), "
            "pg_catalog.set_config('app.user_id', %s, true)",
            (value, user),
        )

    return attack


def _future() -> int:
    return int(time.time()) + 600


# -- the baseline: a signed pool works, an unsigned one is refused ----------------


def test_signed_pool_reads_only_its_tenant(signed) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    with _pool(s, key) as pool:
        for t, n in ((1, 2), (2, 4), (3, 6)):
            with tenant(t), pool.connection() as conn:
                rows = conn.execute("SELECT tenant_id FROM app.invoices").fetchall()
                assert [r[0] for r in rows] == [t] * n
                assert conn.execute("SELECT tenantguard.current_tenant()").fetchone() == (str(t),)


def test_unsigned_pool_on_signed_database_is_refused(signed) -> None:  # type: ignore[no-untyped-def]
    s, _ = signed
    with _pool(s, None) as pool, tenant(1), pool.connection() as conn:
        with pytest.raises(pgerr.InsufficientPrivilege, match="does not hold a signed"):
            conn.execute("SELECT count(*) FROM app.invoices").fetchone()


def test_signing_key_from_environment(signed, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    monkeypatch.setenv("TENANTGUARD_SIGNING_KEY", key.export())
    with TenantPool(s.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(2), pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM app.invoices").fetchone() == (B_INVOICES,)


def test_user_comes_from_the_token(signed) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    with _pool(s, key) as pool, tenant(1, user="alice"), pool.connection() as conn:
        assert conn.execute("SELECT tenantguard.current_user_id()").fetchone() == ("alice",)
        # Editing the plain user setting changes nothing: the user is inside the MAC.
        with conn.transaction():
            conn.execute("SELECT pg_catalog.set_config('app.user_id', 'bob', true)")
            assert conn.execute("SELECT tenantguard.current_user_id()").fetchone() == ("alice",)
            n = conn.execute("UPDATE app.projects SET name = 'x' WHERE owner_id = 'bob'")
            assert n.rowcount == 0
        # An edited user inside the token breaks the MAC.
        tok = sign_context(key, "1", "alice", expires_at=_future())
        with pytest.raises(pgerr.InsufficientPrivilege, match="does not verify"):
            with conn.transaction():
                conn.execute(
                    "SELECT pg_catalog.set_config('app.tenant_id', %s, true)",
                    (tok.replace("alice", "bob"),),
                )
                conn.execute("SELECT tenantguard.current_user_id()")


# -- attacks: arbitrary SQL on a leased connection -------------------------------


def test_plain_setting_of_another_tenant(signed, unsigned) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    with _pool(s, key) as pool:
        assert b_rows_seen(pool, set_setting("2")) == 0
    with _pool(unsigned, None) as pool:  # control: the same SQL reads tenant 2 unsigned
        assert b_rows_seen(pool, set_setting("2")) == B_INVOICES


def test_token_for_b_with_a_wrong_key(signed, unsigned) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    wrong = SigningKey(key.key_id, new_key().secret)  # the real key id, a guessed secret
    with _pool(s, key) as pool:
        assert (
            b_rows_seen(pool, set_setting(sign_context(wrong, "2", None, expires_at=_future())))
            == 0
        )
        # positive control: the same path with the real key reads tenant 2
        good = sign_context(key, "2", None, expires_at=_future())
        assert b_rows_seen(pool, set_setting(good)) == B_INVOICES
    with _pool(unsigned, None) as pool:
        assert b_rows_seen(pool, set_setting("2")) == B_INVOICES


def test_token_with_edited_tenant(signed) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    mine = sign_context(key, "1", None, expires_at=_future())
    assert mine.endswith(".1")
    edited = mine[:-1] + "2"
    with _pool(s, key) as pool:
        assert b_rows_seen(pool, set_setting(edited)) == 0
        # an edited expiry (to extend a token's life) breaks the MAC too
        exp = mine.split(".")[3]
        longer = mine.replace(exp, str(int(exp) + 10**6))
        with tenant(1), pool.connection() as conn, conn.transaction():
            set_setting(longer)(conn)
            with pytest.raises(pgerr.InsufficientPrivilege, match="does not verify"):
                conn.execute("SELECT count(*) FROM app.invoices")
        # positive control: a token signed for tenant 2 does read tenant 2
        theirs = sign_context(key, "2", None, expires_at=_future())
        assert b_rows_seen(pool, set_setting(theirs)) == B_INVOICES


def test_expired_token(signed) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    expired = sign_context(key, "2", None, expires_at=int(time.time()) - 5)
    with _pool(s, key) as pool:
        assert b_rows_seen(pool, set_setting(expired)) == 0
        with tenant(1), pool.connection() as conn, conn.transaction():
            set_setting(expired)(conn)
            with pytest.raises(pgerr.InsufficientPrivilege, match="has expired"):
                conn.execute("SELECT count(*) FROM app.invoices")
        live = sign_context(key, "2", None, expires_at=_future())
        assert b_rows_seen(pool, set_setting(live)) == B_INVOICES


def test_unknown_key_id(signed) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    stranger = new_key()
    assert stranger.key_id != key.key_id
    tok = sign_context(stranger, "2", None, expires_at=_future())
    with _pool(s, key) as pool:
        assert b_rows_seen(pool, set_setting(tok)) == 0
        with tenant(1), pool.connection() as conn, conn.transaction():
            set_setting(tok)(conn)
            with pytest.raises(pgerr.InsufficientPrivilege, match="unknown key id"):
                conn.execute("SELECT count(*) FROM app.invoices")


def test_reading_the_key_table(signed) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    keys_owner = f"tg_keys_{s.suffix}"
    with _pool(s, key) as pool, tenant(1), pool.connection() as conn:
        for attack in (
            "SELECT * FROM tenantguard_keys.signing_keys",
            "COPY tenantguard_keys.signing_keys TO STDOUT",
            "TABLE tenantguard_keys.signing_keys",
        ):
            with pytest.raises(pgerr.InsufficientPrivilege), conn.transaction():
                conn.execute(attack)
        with pytest.raises(pgerr.InsufficientPrivilege), conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(keys_owner)))
        # The view yields the verified context only, never key material.
        with conn.transaction():
            cols = [
                d.name
                for d in conn.execute("SELECT * FROM tenantguard_keys.signed_context").description
                or ()
            ]
        assert cols == ["tenant", "user_id"]
    # control: the key owner does read it (the table holds the key's blocks)
    with s.admin() as admin, admin.transaction():
        admin.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(keys_owner)))
        got = admin.execute("SELECT key_id FROM tenantguard_keys.signing_keys").fetchall()
        assert (key.key_id,) in got


def test_calling_the_helper_internals(signed, unsigned) -> None:  # type: ignore[no-untyped-def]
    s, key = signed

    def attack(conn: psycopg.Connection[Any]) -> None:
        set_setting("2")(conn)
        # The error path only ever raises; the readers only ever verify.
        for q in (
            "SELECT tenantguard_keys._fail_signed('tenant')",
            "SELECT tenantguard.current_tenant()",
        ):
            try:
                with conn.transaction():
                    conn.execute(q)
            except pgerr.InsufficientPrivilege:
                pass
            else:
                raise AssertionError(f"{q} did not raise")
        # Redefining the helpers is refused (the app role owns nothing in either schema).
        for ddl in (
            "CREATE OR REPLACE FUNCTION tenantguard.current_tenant() RETURNS text "
            "LANGUAGE sql AS $$SELECT '2'$$",
            "CREATE OR REPLACE VIEW tenantguard_keys.signed_context AS SELECT '2'::text AS tenant, "
            "''::text AS user_id",
        ):
            try:
                with conn.transaction():
                    conn.execute(ddl)
            except pgerr.InsufficientPrivilege:
                pass
            else:
                raise AssertionError(f"{ddl} succeeded")

    with _pool(s, key) as pool:
        assert b_rows_seen(pool, attack) == 0
    with _pool(unsigned, None) as pool:  # control: unsigned, the helper returns '2'
        with tenant(1), pool.connection() as conn, conn.transaction():
            set_setting("2")(conn)
            assert conn.execute("SELECT tenantguard.current_tenant()").fetchone() == ("2",)
        assert b_rows_seen(pool, set_setting("2")) == B_INVOICES


def test_shadowing_functions_and_operators_on_the_search_path(signed) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    forged = sign_context(new_key(), "2", None, expires_at=_future())
    mac = forged[:64]
    with s.admin() as admin:  # the runtime role may create in a schema of its own
        admin.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS evil AUTHORIZATION {}").format(
                sql.Identifier(s.app_role)
            )
        )
    shadow = [
        # every function and operator the verification uses, made to say "valid"
        f"CREATE OR REPLACE FUNCTION evil.encode(bytea, text) RETURNS text LANGUAGE sql AS $$SELECT '{mac}'$$",
        "CREATE OR REPLACE FUNCTION evil.sha256(bytea) RETURNS bytea LANGUAGE sql AS $$SELECT '\\x00'::bytea$$",
        "CREATE OR REPLACE FUNCTION evil.substr(text, integer, integer) RETURNS text LANGUAGE sql "
        "AS $$SELECT pg_catalog.substr($1, $2, $3)$$",
        "CREATE OR REPLACE FUNCTION evil.always(text, text) RETURNS boolean LANGUAGE sql AS $$SELECT true$$",
        "CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always)",
        "CREATE OR REPLACE FUNCTION evil.date_part(text, timestamptz) RETURNS double precision "
        "LANGUAGE sql AS $$SELECT 0::float8$$",
    ]

    def attack(conn: psycopg.Connection[Any]) -> None:
        for ddl in shadow:
            conn.execute(ddl)
        conn.execute("SET LOCAL search_path = evil, pg_catalog, public")
        # control inside the attack: unqualified calls in this session do hit the shadows
        assert conn.execute("SELECT encode('\\x01'::bytea, 'hex')").fetchone() == (mac,)
        assert conn.execute("SELECT 'a'::text = 'b'::text").fetchone() == (True,)
        set_setting(forged)(conn)

    # The pool refuses a runtime role that can create code (check_role); the attack is
    # made anyway, as if that check were off, to show the verification does not depend on it.
    try:
        with _pool(s, key, check_role=False) as pool:
            assert b_rows_seen(pool, attack) == 0
    finally:
        with s.admin() as admin:
            admin.execute("DROP SCHEMA evil CASCADE")


def test_two_live_keys_while_rolling_then_retire(signed) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    with s.admin() as admin:
        new = rotate_key(admin)
    try:
        for k in (key, new):  # both verify while rolling
            with _pool(s, k) as pool, tenant(2), pool.connection() as conn:
                assert conn.execute("SELECT count(*) FROM app.invoices").fetchone() == (B_INVOICES,)
        with s.admin() as admin:
            with pytest.raises(UsageError, match="live already"):
                rotate_key(admin)
            retire_key(admin, key.key_id)
        with _pool(s, key) as pool, tenant(2), pool.connection() as conn:
            with pytest.raises(pgerr.InsufficientPrivilege, match="retired key"):
                conn.execute("SELECT count(*) FROM app.invoices")
        with _pool(s, new) as pool, tenant(2), pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM app.invoices").fetchone() == (B_INVOICES,)
        with s.admin() as admin:
            with pytest.raises(ConfigurationError, match="only live key"):
                retire_key(admin, new.key_id)
    finally:  # the module's other tests sign with `key`: bring it back
        with s.admin() as admin:
            admin.execute(
                "UPDATE tenantguard_keys.signing_keys SET retired_at = NULL WHERE key_id = %s",
                (key.key_id,),
            )
            admin.execute(
                "UPDATE tenantguard_keys.signing_keys SET retired_at = now() WHERE key_id = %s",
                (new.key_id,),
            )


def test_plain_install_does_not_downgrade_a_signed_one(signed) -> None:  # type: ignore[no-untyped-def]
    s, _ = signed
    with s.admin() as admin, pytest.raises(ConfigurationError, match="--signed"):
        install(admin, InstallSpec(app_role=s.app_role, owner_role=s.owner_role))


def test_protect_signed_policies_read_the_view(signed) -> None:  # type: ignore[no-untyped-def]
    s, _ = signed
    with s.admin() as admin:
        quals = admin.execute(
            "SELECT pg_catalog.pg_get_expr(p.polqual, p.polrelid) FROM pg_catalog.pg_policy p "
            "WHERE p.polrelid = 'app.invoices'::regclass"
        ).fetchall()
        assert quals and all("signed_context" in q for (q,) in quals)
        assert protect(admin, ["app.invoices"]).tables[0].statements == []  # idempotent


# -- no database: the key and token format ---------------------------------------


def test_parse_signing_key_never_echoes_the_secret() -> None:
    key = new_key()
    assert parse_signing_key(key.export()) == key
    assert parse_signing_key("TENANTGUARD_SIGNING_KEY=" + key.export()) == key
    bad = key.export()[:-1] + "z"
    with pytest.raises(InvalidSigningKey) as info:
        parse_signing_key(bad)
    assert key.secret.hex()[:20] not in str(info.value)
    assert key.secret.hex() not in repr(key) and key.secret.hex() not in str(key)


def test_binder_caches_a_token_until_shortly_before_expiry() -> None:
    from tenantguard.core.context import TenantContext
    from tenantguard.core.ids import parse_tenant_id

    binder = SignedBinder(new_key(), ttl=100, refresh=20)
    ctx = TenantContext(parse_tenant_id(7))
    first = binder.token(ctx, now=1000.0)
    assert binder.token(ctx, now=1079.0) == first
    later = binder.token(ctx, now=1080.0)
    assert later != first and later.split(".")[3] == f"{1180:010d}"
    assert binder.token(TenantContext(parse_tenant_id(7), "u"), now=1080.0) != later
    _query, params = binder.bind_query(ctx)
    assert params[0] == "app.tenant_id" and params[1].endswith(".7")
    with pytest.raises(InvalidSigningKey):
        SignedBinder(new_key(), ttl=10, refresh=10)


def test_signed_install_audits_clean(signed) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.tooling.audit import audit_database

    s, _ = signed
    with s.admin() as admin:
        report = audit_database(admin, app_role=s.app_role)
    assert [(f.rule.code, f.object, f.message) for f in report.findings] == []


def test_probe_of_signed_install_runs_every_attack_and_finds_nothing(signed) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.tooling.probe import probe_database

    s, key = signed
    with s.admin() as admin:
        for k in (None, key):  # the probe's own rolled-back key, then the application's
            report = probe_database(admin, app_role=s.app_role, signing_key=k)
            assert [(f.rule.code, f.object, f.message) for f in report.findings] == []
            assert report.meta["tables_probed"] == 3 and report.meta["attacks_not_run"] == 0
        keys = admin.execute("SELECT count(*) FROM tenantguard_keys.signing_keys").fetchone()
        assert keys is not None and keys[0] >= 1
        # a key the database does not know: nothing can be probed, and the report says so
        report = probe_database(admin, app_role=s.app_role, signing_key=new_key())
        codes = {f.rule.code for f in report.findings}
        assert codes == {"TGP191"} and report.meta["tables_probed"] == 0


def test_signed_statement_is_still_one_round_trip(signed) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.testing.rtproxy import RoundTripProxy
    from test_roundtrips import measure, upstream_of

    s, key = signed
    with RoundTripProxy(upstream_of(s.app_dsn)) as proxy:
        params = psycopg.conninfo.conninfo_to_dict(s.app_dsn)
        params.update(proxy.conninfo())
        dsn = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})
        with TenantPool(dsn, min_size=1, max_size=1, signing_key=key) as pool:
            for n in range(8):  # before and after psycopg starts preparing (threshold 5)

                def request(t: int = 1 + n % 3) -> None:
                    with tenant(t), pool.connection() as conn:
                        rows = conn.execute("SELECT tenant_id FROM app.invoices").fetchall()
                        assert {r[0] for r in rows} == {t}

                assert measure(proxy, request) == 1


def test_async_pool_binds_signed_contexts(signed) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from tenantguard import AsyncTenantPool

    s, key = signed

    async def main() -> list[tuple[int, int]]:
        out = []
        async with AsyncTenantPool(s.app_dsn, min_size=1, max_size=1, signing_key=key) as pool:
            for t in (1, 2, 3):
                with tenant(t):
                    async with pool.connection() as conn:
                        cur = await conn.execute("SELECT tenant_id FROM app.invoices")
                        rows = await cur.fetchall()
                        out.append((t, len(rows)))
                        assert {r[0] for r in rows} == {t}
        async with AsyncTenantPool(s.app_dsn, min_size=1, max_size=1) as plain:  # control
            with tenant(1):
                async with plain.connection() as conn:
                    with pytest.raises(pgerr.InsufficientPrivilege):
                        await conn.execute("SELECT count(*) FROM app.invoices")
        return out

    assert asyncio.run(main()) == [(1, 2), (2, 4), (3, 6)]


def test_verification_runs_once_per_statement_not_per_row(signed) -> None:  # type: ignore[no-untyped-def]
    s, key = signed
    with _pool(s, key) as pool, tenant(3), pool.connection() as conn:
        with conn.transaction():
            plan = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM app.invoices"
            ).fetchone()
    assert plan is not None

    def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    root = plan[0][0]["Plan"]
    assert root["Actual Rows"] == 6  # tenant 3's invoices, each checked against the InitPlan
    key_scans = [n for n in nodes(root) if n.get("Relation Name") == "signing_keys"]
    assert key_scans and all(n["Actual Loops"] == 1 for n in key_scans)


def test_cli_install_signed_and_keys(server_dsn: str) -> None:
    from click.testing import CliRunner

    from tenantguard.cli import main

    for s in make_scratch(server_dsn):
        runner = CliRunner()
        keys_owner = f"tg_keys_{s.suffix}"
        base = ["--dsn", s.admin_dsn]
        r = runner.invoke(
            main,
            [
                "install",
                *base,
                "--app-role",
                s.app_role,
                "--owner-role",
                s.owner_role,
                "--signed",
                "--key-owner-role",
                keys_owner,
            ],
        )
        assert r.exit_code == 0, r.output
        again = runner.invoke(  # idempotent: a second run changes nothing that matters
            main,
            [
                "install",
                *base,
                "--app-role",
                s.app_role,
                "--owner-role",
                s.owner_role,
                "--signed",
                "--key-owner-role",
                keys_owner,
            ],
        )
        assert again.exit_code == 0, again.output
        r = runner.invoke(main, ["keys", "create", *base])
        assert r.exit_code == 0, r.output
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("TENANTGUARD_SIGNING_KEY=")]
        assert len(lines) == 1
        key = parse_signing_key(lines[0])
        r = runner.invoke(main, ["keys", "create", *base])  # a live key exists: use rotate
        assert r.exit_code == 2 and "rotate" in r.output
        r = runner.invoke(main, ["keys", "rotate", *base])
        assert r.exit_code == 0
        new = parse_signing_key(r.stdout.strip().splitlines()[0])
        r = runner.invoke(main, ["keys", "list", *base, "--format", "json"])
        listed = json.loads(r.stdout)
        assert [k["key_id"] for k in listed if k["live"]] == [key.key_id, new.key_id]
        assert key.secret.hex() not in r.stdout and new.secret.hex() not in r.stdout
        r = runner.invoke(main, ["keys", "retire", key.key_id, *base])
        assert r.exit_code == 0
        r = runner.invoke(main, ["keys", "retire", new.key_id, *base])  # the last live key
        assert r.exit_code == 2 and "--force" in r.output
