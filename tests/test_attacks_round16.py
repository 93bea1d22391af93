"""The sixteenth adversarial review, each attack next to its control.

1. A login that can ``SET ROLE`` to a role holding ``CREATE`` on the database, through a
   NOINHERIT membership (PostgreSQL 15: a NOINHERIT login; 16+: ``GRANT ... WITH INHERIT
   FALSE``): ``has_database_privilege(login)`` follows inherited privileges only, so the
   pool's "can create code" check passed. ``SET LOCAL ROLE`` reached the privilege:
   tenant 1 created a schema named like the login (``"$user"``, first on the default
   search_path), with a view shadowing ``public.documents`` whose function copied every
   row it returned; tenant 2's own later request fed it. The check now covers every role
   the login is a member of (control: the login's own privileges only).
2. A login that is a member of ``pg_execute_server_program``: the pool opened, and
   ``COPY ... TO PROGRAM`` was classified clean and sent; the program (psql as the server's
   superuser) copied tenant 2's rows into tenant 1's. The pool now refuses such a login
   (``pg_read_server_files`` and ``pg_write_server_files`` too), and the classifier
   refuses COPY to or from a server file or program (controls: each defence removed).
3. ``pg_sequence_last_value()`` and the ``pg_sequences`` view return the id another
   tenant's request just drew from a shared ``serial`` sequence, as ``currval`` (refused
   since the fourth review) would: refused the same way now (control: the classifier
   without them).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conftest import Scratch
from tenantguard import TenantPool, tenant
from tenantguard.admin import protect
from tenantguard.core import classify, rolecheck
from tenantguard.core.names import QualifiedName
from tenantguard.core.sqlbuild import grant_statements
from tenantguard.drivers.psycopg import _pool_base
from tenantguard.errors import UnsafeRoleError, UnsupportedOperation


def _version(s: Scratch) -> int:
    with s.admin() as a:
        return int(a.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]


def _pool(s: Scratch) -> TenantPool:
    return TenantPool(s.app_dsn, min_size=1, max_size=1, open=True)


def _login_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for 1: code privileges of the login itself (and what it inherits)."""
    query = rolecheck.ROLE_CHECK_QUERY.replace(
        "WHERE pg_catalog.pg_has_role(t.oid, r.oid, 'MEMBER')\n), tenant_tables",
        "WHERE r.oid = t.oid\n), tenant_tables",
    )
    assert query != rolecheck.ROLE_CHECK_QUERY
    monkeypatch.setattr(_pool_base, "ROLE_CHECK_QUERY", query)


@pytest.fixture
def maker_membership(saas: Scratch) -> Iterator[str]:
    """A NOLOGIN role with CREATE on the database that the login can SET ROLE to, but
    whose privileges it does not inherit; and public.documents, protected, with rows of
    tenants 1 and 2."""
    maker = f"tg_maker_{saas.suffix}"
    app, m = sql.Identifier(saas.app_role), sql.Identifier(maker)
    with saas.admin() as a:
        a.execute("DROP TABLE IF EXISTS public.documents")
        a.execute("CREATE TABLE public.documents (tenant_id bigint NOT NULL, body text)")
        a.execute(
            sql.SQL("ALTER TABLE public.documents OWNER TO {}").format(
                sql.Identifier(saas.owner_role)
            )
        )
        protect(a, ["public.documents"])
        for st in grant_statements([QualifiedName.parse("public.documents")], saas.app_role):
            a.execute(st)
        a.execute("INSERT INTO public.documents VALUES (1, 'acme memo'), (2, 'globex: merger')")
        a.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(m))
        a.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(saas.dbname), m)
        )
        if _version(saas) >= 160000:
            a.execute(sql.SQL("GRANT {} TO {} WITH INHERIT FALSE").format(m, app))
        else:
            a.execute(sql.SQL("ALTER ROLE {} NOINHERIT").format(app))
            a.execute(sql.SQL("GRANT {} TO {}").format(m, app))
    try:
        yield maker
    finally:
        with saas.admin() as a:
            a.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(app))
            a.execute("DROP TABLE IF EXISTS public.documents")
            a.execute(sql.SQL("REVOKE {} FROM {}").format(m, app))
            a.execute(sql.SQL("ALTER ROLE {} INHERIT").format(app))
            a.execute(
                sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(
                    sql.Identifier(saas.dbname), m
                )
            )
            a.execute(sql.SQL("DROP ROLE {}").format(m))


def test_a_role_reached_by_set_role_counts_for_code_privileges(
    saas: Scratch, maker_membership: str
) -> None:
    with pytest.raises(UnsafeRoleError) as err:
        _pool(saas)
    text = str(err.value)
    assert "CREATE on the database" in text and maker_membership in text
    assert f'REVOKE "{maker_membership}" FROM "{saas.app_role}"' in "\n".join(err.value.fixes)


def test_control_set_role_reaches_create_and_a_view_shadows_the_next_tenants_table(
    saas: Scratch, maker_membership: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _login_only(monkeypatch)
    # and the eighteenth review's refusal of GRANT on a lease, which the attack uses too
    flagged = classify._node_effects
    monkeypatch.setattr(classify, "_node_effects", lambda n: flagged(n) - {classify.PRIVILEGES})
    ns, m = sql.Identifier(saas.app_role), sql.Identifier(maker_membership)
    with _pool(saas) as pool:  # the control: the pool opens
        with tenant(1), pool.connection() as c, c.transaction():
            c.execute(sql.SQL("SET LOCAL ROLE {}").format(m))
            c.execute(sql.SQL("CREATE SCHEMA {}").format(ns))
            c.execute(sql.SQL("CREATE TABLE {}.loot (tenant_id bigint, body text)").format(ns))
            c.execute(
                sql.SQL(
                    "CREATE FUNCTION {}.grab(t bigint, b text) RETURNS boolean LANGUAGE sql "
                    "VOLATILE AS $$ INSERT INTO {}.loot VALUES (t, b) RETURNING true $$"
                ).format(ns, ns)
            )
            c.execute(
                sql.SQL(
                    "CREATE VIEW {}.documents WITH (security_invoker) AS "
                    "SELECT d.* FROM public.documents d WHERE {}.grab(d.tenant_id, d.body)"
                ).format(ns, ns)
            )
            c.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(ns))
            c.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA {} TO PUBLIC").format(ns))
        with tenant(2), pool.connection() as c:  # tenant 2's own request
            assert c.execute("SELECT body FROM documents").fetchall() == [("globex: merger",)]
        with tenant(1), pool.connection() as c:
            loot = c.execute(sql.SQL("SELECT tenant_id, body FROM {}.loot").format(ns)).fetchall()
    assert (2, "globex: merger") in loot  # tenant 1 reads tenant 2's row


@pytest.fixture
def server_program(saas: Scratch) -> Iterator[None]:
    app = sql.Identifier(saas.app_role)
    with saas.admin() as a:
        a.execute(sql.SQL("GRANT pg_execute_server_program TO {}").format(app))
    try:
        yield
    finally:
        with saas.admin() as a:
            a.execute(sql.SQL("REVOKE pg_execute_server_program FROM {}").format(app))
            a.execute("DELETE FROM app.invoices WHERE note LIKE 'stolen:%'")


def test_a_server_program_member_is_refused(saas: Scratch, server_program: None) -> None:
    with pytest.raises(UnsafeRoleError) as err:
        _pool(saas)
    assert "pg_execute_server_program" in str(err.value)
    assert "member_of_server_access" in rolecheck.KINDS


def _copy_to_program(s: Scratch) -> sql.Composed:
    """A program, run by the server as its OS user, that logs in as the server's
    superuser and copies tenant 2's invoices into tenant 1's."""
    info = psycopg.conninfo.conninfo_to_dict(s.admin_dsn)
    psql = shutil.which("psql")
    assert psql is not None  # Debian's postgresql-client, wherever the suite runs
    cmd = (
        f"{psql} -X -q -h {info.get('host', '127.0.0.1')} -p {info.get('port', 5432)} "
        f'-U {info.get("user", "postgres")} -d {s.dbname} -c "INSERT INTO app.invoices '
        "(tenant_id, amount, note) SELECT 1, amount, 'stolen: ' || note FROM app.invoices "
        'WHERE tenant_id = 2"'
    )
    return sql.SQL("COPY (SELECT 1) TO PROGRAM {}").format(sql.Literal(cmd))


def test_copy_to_a_server_program_is_refused_before_sending(
    saas: Scratch, server_program: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The role check removed (its control), the classifier still refuses the statement.
    monkeypatch.setattr(rolecheck, "SERVER_ACCESS_ROLES", ())
    with _pool(saas) as pool, tenant(1), pool.connection() as c:
        with pytest.raises(UnsupportedOperation, match="COPY to or from a file or program"):
            c.execute(_copy_to_program(saas))
        with pytest.raises(UnsupportedOperation, match="COPY to or from a file or program"):
            c.execute("COPY app.invoices FROM '/etc/hostname'")
        assert c.execute(
            "SELECT count(*) FROM app.invoices WHERE note LIKE 'stolen:%'"
        ).fetchone() == (0,)


def test_control_a_server_program_copies_the_other_tenants_rows(
    saas: Scratch, server_program: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rolecheck, "SERVER_ACCESS_ROLES", ())
    flagged = classify._node_effects
    monkeypatch.setattr(classify, "_node_effects", lambda n: flagged(n) - {classify.SERVER_COPY})
    with _pool(saas) as pool, tenant(1), pool.connection() as c:
        c.execute(_copy_to_program(saas))
        stolen = c.execute(
            "SELECT note FROM app.invoices WHERE note LIKE 'stolen:%' ORDER BY 1"
        ).fetchall()
    assert stolen and all(n == "stolen: tenant 2" for (n,) in stolen)


@pytest.fixture
def serial_orders(saas: Scratch) -> Iterator[str]:
    """A protected table with a ``serial`` id (its sequence shared by every tenant)."""
    with saas.admin() as a:
        a.execute(
            sql.SQL(
                "CREATE TABLE app.orders (tenant_id bigint NOT NULL, id bigserial PRIMARY KEY); "
                "ALTER TABLE app.orders OWNER TO {}"
            ).format(sql.Identifier(saas.owner_role))
        )
        protect(a, ["app.orders"])
        for st in grant_statements(
            [QualifiedName.parse("app.orders")],
            saas.app_role,
            sequences=[QualifiedName.parse("app.orders_id_seq")],
        ):
            a.execute(st)
    try:
        yield "app.orders_id_seq"
    finally:
        with saas.admin() as a:
            a.execute("DROP TABLE app.orders")


LAST_VALUE = [
    "SELECT pg_sequence_last_value('app.orders_id_seq')",
    "SELECT last_value FROM pg_sequences WHERE sequencename = 'orders_id_seq'",
]


def _tenant2_draws(pool: TenantPool) -> int:
    with tenant(2), pool.connection() as c:
        row = c.execute("INSERT INTO app.orders (tenant_id) VALUES (2) RETURNING id").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("query", LAST_VALUE)
def test_the_sequences_last_value_is_refused(saas: Scratch, serial_orders: str, query: str) -> None:
    with _pool(saas) as pool:
        _tenant2_draws(pool)
        with tenant(1), pool.connection() as c:
            with pytest.raises(UnsupportedOperation, match="last drew from a sequence"):
                c.execute(query)


@pytest.mark.parametrize("query", LAST_VALUE)
def test_control_the_sequences_last_value_is_tenant_2s_new_id(
    saas: Scratch, serial_orders: str, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        classify, "_REFUSED_FUNCS", classify._REFUSED_FUNCS - {"pg_sequence_last_value"}
    )
    monkeypatch.setattr(classify, "_REFUSED_RELATIONS", {})
    with _pool(saas) as pool:
        drawn = _tenant2_draws(pool)
        with tenant(1), pool.connection() as c:
            seen: Any = c.execute(query).fetchone()
    assert seen == (drawn,)
