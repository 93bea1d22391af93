"""The second adversarial review of the pool model: each bypass it found, now refused.

Each test runs the reviewer's attack against the default pool (``session_state="refuse"``)
and checks the secure outcome; each control runs the same statement with the classifier
taken away and shows what it did before. Pools have one connection, so tenant 2's lease
gets tenant 1's server session.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg import sql

from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.errors import SessionStateRefused, UnsupportedOperation

TIMEOUT = "SHOW statement_timeout"
PG_SETTINGS = "UPDATE pg_catalog.pg_settings SET setting = '1' WHERE name = 'statement_timeout'"
# Raw, "$%s$" does not lex; psycopg sends "$$1$ $$": a string, the set_config as code, a comment.
PLACEHOLDER = "SELECT $%s$ $$, pg_catalog.set_config('statement_timeout', '1', false), 1 -- $NULL$"
# One statement: ts_stat's first text turns standard_conforming_strings off for the
# statement; the second text then means two strings to pglast, code and a comment to the server.
_X = (
    "SELECT pg_catalog.to_tsvector('a\\' , ' || pg_catalog.set_config($$statement_timeout$$, "
    "$$1$$, false) || pg_catalog.pg_advisory_lock(4242)::text) -- ')"
)
SCS_HIDDEN = (
    "SELECT (SELECT count(*) FROM pg_catalog.ts_stat('SELECT pg_catalog.to_tsvector("
    "pg_catalog.set_config(''standard_conforming_strings'', ''off'', true))')), "
    "(SELECT count(*) FROM pg_catalog.ts_stat('" + _X.replace("'", "''") + "'))"
)


def _send(conn, how: str) -> None:  # type: ignore[no-untyped-def]
    """The reviewer's statements, each the way it got through."""
    if how == "pg_settings":
        conn.execute(PG_SETTINGS)
    elif how == "placeholder in a transaction":
        with conn.transaction():
            conn.execute(PLACEHOLDER, (1,))
    elif how == "placeholder in executemany":
        with conn.transaction():
            conn.cursor().executemany(PLACEHOLDER, [(1,)])
    elif how == "placeholder in a pipeline":
        with conn.pipeline():
            conn.execute(PLACEHOLDER, (1,))
    elif how == "stream(query=...)":
        with conn.transaction():
            q = "SELECT pg_catalog.set_config('statement_timeout', '1', false)"
            list(conn.cursor().stream(query=q))
    elif how == "standard_conforming_strings inside ts_stat":
        conn.execute(SCS_HIDDEN)
    else:
        raise AssertionError(how)


HOW = [
    "pg_settings",
    "placeholder in a transaction",
    "placeholder in executemany",
    "placeholder in a pipeline",
    "stream(query=...)",
    "standard_conforming_strings inside ts_stat",
]


def _locks(saas) -> int:  # type: ignore[no-untyped-def]
    with psycopg.connect(saas.admin_dsn) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
        ).fetchone()
        return int(row[0])  # type: ignore[index]


@pytest.mark.parametrize("how", HOW)
def test_the_review_s_statements_are_refused(saas, how) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            with pytest.raises(UnsupportedOperation) as err:
                _send(conn, how)
            assert "nothing was sent" in str(err.value)
        with tenant(2), pool.connection() as conn:
            assert conn.execute(TIMEOUT).fetchone() == ("0",)
        assert _locks(saas) == 0


@pytest.mark.parametrize("how", HOW)
def test_control_without_the_classifier_the_next_tenant_inherits_it(saas, how) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state="reset") as pool:
        pool._core.classifier.effects = lambda q, params=False: frozenset()  # type: ignore[method-assign]
        with tenant(1), pool.connection() as conn:
            _send(conn, how)
        with tenant(2), pool.connection() as conn:
            assert conn.execute(TIMEOUT).fetchone() == ("1ms",)
            conn.execute("SELECT pg_catalog.pg_advisory_unlock_all()")


def test_the_ts_stat_statement_is_refused_by_the_async_pool(saas) -> None:  # type: ignore[no-untyped-def]
    async def run() -> object:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                with pytest.raises(UnsupportedOperation, match="standard_conforming_strings"):
                    await conn.execute(SCS_HIDDEN)
            async with pool.connection(tenant_id=2) as conn:
                cur = await conn.execute(TIMEOUT)
                return await cur.fetchone()

    assert asyncio.run(run()) == ("0",)
    assert _locks(saas) == 0


def _serial_table(saas) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.admin import protect
    from tenantguard.admin.protect import runtime_grants

    with psycopg.connect(saas.admin_dsn, autocommit=True) as admin:
        with admin.transaction():
            admin.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(saas.owner_role)))
            admin.execute(
                "CREATE TABLE IF NOT EXISTS app.orders "
                "(tenant_id bigint NOT NULL, id bigserial PRIMARY KEY, item text)"
            )
        protect(admin, ["app.orders"])
        for stmt in runtime_grants(admin, ["app.orders"], saas.app_role):
            admin.execute(stmt)


@pytest.mark.parametrize(
    "call", ["SELECT pg_catalog.lastval()", "SELECT currval('app.orders_id_seq')"]
)
def test_lastval_of_another_tenants_insert_is_refused(saas, call) -> None:  # type: ignore[no-untyped-def]
    _serial_table(saas)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state="reset") as pool:
        with tenant(2), pool.connection() as conn:
            conn.execute(
                "INSERT INTO app.orders (tenant_id, item) VALUES (2, 'secret') RETURNING id"
            )
        with tenant(1), pool.connection() as conn:
            with pytest.raises(UnsupportedOperation, match="RETURNING"):
                conn.execute(call)


def test_control_lastval_returns_another_tenants_id(saas) -> None:  # type: ignore[no-untyped-def]
    _serial_table(saas)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        pool._core.classifier.effects = lambda q, params=False: frozenset()  # type: ignore[method-assign]
        with tenant(2), pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO app.orders (tenant_id, item) VALUES (2, 'secret') RETURNING id"
            ).fetchone()
        with tenant(1), pool.connection() as conn:
            assert conn.execute("SELECT pg_catalog.lastval()").fetchone() == row


def test_set_local_of_a_lexer_setting_is_refused_in_every_mode(saas) -> None:  # type: ignore[no-untyped-def]
    for mode in ("refuse", "reset"):
        with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state=mode) as pool:
            with tenant(1), pool.connection() as conn, conn.transaction():
                for stmt in (
                    "SET LOCAL standard_conforming_strings = off",
                    "SELECT set_config('client_encoding', 'SJIS', true)",
                ):
                    with pytest.raises(UnsupportedOperation, match="how the server"):
                        conn.execute(stmt)


def test_refusal_names_what_it_refused(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            with pytest.raises(SessionStateRefused) as err:
                conn.execute(PG_SETTINGS)
            assert err.value.effects == ["setting:pg_settings"] and err.value.code == "TG008"
