"""The third adversarial review: executemany with a ``None`` parameter set.

The differential: tenantguard classifies ``cursor.executemany(query, params_seq)`` as if
psycopg replaced its placeholders (``note(query, conn.pgconn, True)``), but psycopg sends
the query text *raw* when the first parameter set is ``None``
(``PostgresQuery.convert(query, None)``). A text whose converted form is a comment and
whose raw form is any statement got every refused statement through, and the checkin
guard never verified the connection (no effect was recorded). Now each parameter set is
screened as psycopg will send it; the controls blind the screening and show the attack.
"""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest

from tenantguard import AsyncTenantPool, TenantPool, tenant
from tenantguard.core.classify import classify_sql
from tenantguard.drivers.psycopg import fast_path
from tenantguard.errors import SessionStateRefused

# The attack replaces the fast path's named binding; the public-API path sends the binding
# unnamed, so there the controls have nothing to take over (the defences still run).
NAMED_BINDING = pytest.mark.skipif(
    not fast_path()[0], reason="the public-API path sends the binding unnamed: nothing to replace"
)


def hide(stmt: str) -> str:
    """Raw: a comment, ``--)s`` comment, *stmt*, a comment. Converted (``%(*/ --)s`` is a
    named placeholder): ``/*$1 ... */ SELECT 1``, one block comment then ``SELECT 1``."""
    return "/*%(*/ --)s\n" + stmt + "\n-- */ SELECT 1"


# Replaces tenantguard's prepared binding: same settings, plus a session-level copy of
# whatever the binding's tenant can see, kept for a later lease on the same server session.
LEAK = (
    "PREPARE {name}(text,text,text,text) AS "
    "SELECT pg_catalog.set_config($1,$2,true), pg_catalog.set_config($3,$4,true), "
    "pg_catalog.set_config('app.leak', COALESCE(pg_catalog.current_setting('app.leak', true), '') "
    "OPERATOR(pg_catalog.||) (SELECT pg_catalog.string_agg(note OPERATOR(pg_catalog.||) '='"
    " OPERATOR(pg_catalog.||) amount::text, ',') FROM app.invoices) "
    "OPERATOR(pg_catalog.||) ';', false)"
)
BIND_SQL_START = "SELECT pg_catalog.set_config($1, $2, true), pg_catalog.set_config($3, $4, true)"


def test_the_hidden_text_classifies_clean() -> None:
    stmt = hide(LEAK.format(name="_tg_bind"))
    assert classify_sql(stmt, params=True) == frozenset()  # what tenantguard checks
    assert "prepared_statement" in classify_sql(stmt)  # what the server runs


def _old_screening(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The control: executemany screened as before (always as if converted)."""
    from tenantguard.drivers.psycopg import _connection, _connection_async

    def screened(st, query, pgconn, params_seq):  # type: ignore[no-untyped-def]
        st.note(query, pgconn, True)
        yield from params_seq

    monkeypatch.setattr(_connection, "screened", screened)
    monkeypatch.setattr(_connection_async, "screened", screened)


def _hijack(pool: TenantPool) -> object:
    """Tenant 1 replaces the prepared binding; tenant 2's next lease copies its invoices
    into a session setting; tenant 1's next lease reads them."""
    with tenant(1), pool.connection() as conn:
        conn.execute("SELECT 1")  # the fast path prepares _tg_bind
        cur = conn.cursor()
        cur.executemany(hide("DEALLOCATE _tg_bind"), [None])
        cur.executemany(hide(LEAK.format(name="_tg_bind")), [None])
    with tenant(2), pool.connection() as conn:  # an ordinary request of tenant 2
        assert conn.execute("SELECT count(*) FROM app.invoices").fetchone() == (4,)
    with tenant(1), pool.connection() as conn:
        row = conn.execute("SELECT pg_catalog.current_setting('app.leak', true)").fetchone()
    return row[0] if row else None


def test_executemany_with_a_none_parameter_set_is_screened_raw(saas) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with pytest.raises(SessionStateRefused, match="prepared_statement"):
            _hijack(pool)
        with tenant(2), pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM app.invoices").fetchone() == (4,)
        with tenant(1), pool.connection() as conn:
            cur = conn.cursor()
            # mixed sets: each screened as it is sent (the second is raw: refused)
            with pytest.raises(SessionStateRefused):
                cur.executemany(hide("SET statement_timeout = 1"), [{"*/ --": 1}, None])
            assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
            cur.executemany("SELECT %s", [])  # nothing to send


@NAMED_BINDING
def test_control_with_the_old_screening_tenant_1_reads_tenant_2s_rows(saas, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _old_screening(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        leaked = _hijack(pool)
        assert pool.guard_stats.verified == 0  # the guard never looked
    assert "tenant 2" in str(leaked), leaked


def test_executemany_with_a_none_parameter_set_is_screened_async(saas) -> None:  # type: ignore[no-untyped-def]
    async def main() -> object:
        async with AsyncTenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
            async with pool.connection(tenant_id=1) as conn:
                cur = conn.cursor()
                with pytest.raises(SessionStateRefused):
                    await cur.executemany(
                        hide(
                            "SELECT pg_catalog.set_config('default_transaction_read_only', 'on', false)"
                        ),
                        [None],
                    )
            async with pool.connection(tenant_id=2) as conn:
                cur = await conn.execute("SHOW default_transaction_read_only")
                return await cur.fetchone()

    assert asyncio.run(main()) == ("off",)


@pytest.mark.pgbouncer
@pytest.mark.parametrize(
    "screening", ["current", pytest.param("old (control)", marks=NAMED_BINDING)]
)
def test_executemany_none_through_pgbouncer(saas, pgbouncer_binary, screening, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Through transaction-mode PgBouncer (one server connection): client A (tenant 1)
    tries to hijack the server's prepared binding for client B's tenant 2 requests."""
    from tenantguard.testing.pgbouncer import PgBouncer

    if screening != "current":
        _old_screening(monkeypatch)
    params = psycopg.conninfo.conninfo_to_dict(saas.admin_dsn)
    host, port = str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)
    with PgBouncer(host, port, users=[saas.app_role], pool_size=1, binary=pgbouncer_binary) as pgb:
        params.update(pgb.conninfo(user=saas.app_role))
        dsn = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})
        kw = {} if pgb.keeps_prepared else {"prepare_threshold": None}
        with (
            TenantPool(dsn, min_size=1, max_size=1, kwargs=kw) as a,
            TenantPool(dsn, min_size=1, max_size=1, kwargs=kw) as b,
        ):
            with tenant(2), b.connection() as conn:
                conn.execute("SELECT 1")  # B's binding is prepared on the server connection
            with tenant(1), a.connection() as conn:
                conn.execute("SELECT 1")
                row = conn.execute(
                    "SELECT name FROM pg_catalog.pg_prepared_statements "
                    "WHERE pg_catalog.starts_with(statement, %s)",
                    (BIND_SQL_START,),
                ).fetchone()
                # Through 1.18 nothing is prepared on the server: a name that is not there.
                name = row[0] if row else "_tg_bind"
                cur = conn.cursor()
                try:
                    cur.executemany(hide(f'DEALLOCATE "{name}"'), [None])
                    cur.executemany(hide(LEAK.format(name=f'"{name}"')), [None])
                    sent = True
                except SessionStateRefused:
                    sent = False
                except psycopg.errors.InvalidSqlStatementName:
                    sent = False  # 1.18: no server-side binding to replace
            with tenant(1), a.connection() as conn:
                # psycopg's executemany pipeline may end with a Flush after its Sync, which
                # keeps PgBouncer's one server connection linked to client A until A sends
                # again (README, "The public-API path behind PgBouncer")
                conn.execute("SELECT 1")
            result: list[object] = []

            def client_b() -> None:  # another process's ordinary request
                with tenant(2), b.connection() as conn:
                    result.append(conn.execute("SELECT count(*) FROM app.invoices").fetchone())

            t = threading.Thread(target=client_b)
            t.start()
            t.join(30)
            assert result == [(4,)]
            with tenant(1), a.connection() as conn:
                leaked = conn.execute(
                    "SELECT pg_catalog.current_setting('app.leak', true)"
                ).fetchone()[0]
            with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
                c.execute("DISCARD ALL")
    if screening == "current":
        assert not sent and "tenant 2" not in str(leaked or "")
    elif pgb.keeps_prepared:
        assert sent and "tenant 2" in str(leaked), leaked  # the control: it crossed tenants
    else:
        assert "tenant 2" not in str(leaked or "")  # 1.18: no server-side binding to take
