"""The eighteenth adversarial review, each attack next to its control. Every one needed a
setup step beyond ``install`` + ``protect``; each is refused when the pool opens, and the
statement it used is refused before sending.

1. A login that owns the database: ``GRANT CREATE ON DATABASE ... TO CURRENT_USER`` gave it
   code back, and ``ALTER DATABASE ... CONNECTION LIMIT 0`` locked every tenant out.
2. A login that owns the tenant schema (its CREATE revoked, as the pool's hint said): it
   dropped a tenant table with every tenant's rows.
3. A login with REPLICATION: a replication slot outlives the lease (and logical decoding
   reads every tenant's writes where ``wal_level = logical``).
4. contrib's ``crosstab()`` runs SQL text: a session-level ``set_config`` inside it left a
   1 ms ``statement_timeout`` for the next tenant; ``connectby()`` builds SQL from names.
5. Owned objects of any kind (an extension, a sequence, a text search configuration): the
   role check now reads every owner dependency (``pg_shdepend``), not a list of catalogs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conftest import Scratch
from tenantguard import TenantPool, tenant
from tenantguard.core import classify
from tenantguard.core.classify import classify_sql
from tenantguard.errors import UnsafeRoleError, UnsupportedOperation
from test_attacks_round17 import _without_column

OWNED = "ARRAY(SELECT o.what FROM ("
REPLICATION = "EXISTS (SELECT 1 FROM reach r JOIN pg_catalog.pg_roles x"


def _pool(s: Scratch) -> TenantPool:
    return TenantPool(s.app_dsn, min_size=1, max_size=1, open=True)


def _unrefused(monkeypatch: pytest.MonkeyPatch, effect: str) -> None:
    """The classifier's control: *effect* is not flagged."""
    flagged = classify._node_effects
    monkeypatch.setattr(classify, "_node_effects", lambda n: flagged(n) - {effect})


# --- 1. the database's owner ----------------------------------------------------------------


@pytest.fixture
def owns_database(saas: Scratch) -> Iterator[None]:
    db, app = sql.Identifier(saas.dbname), sql.Identifier(saas.app_role)
    with saas.admin() as a:
        a.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, app))
        # what an administrator revokes so that the code check passes (PG15+: public is
        # owned by pg_database_owner, whose members hold CREATE on it)
        a.execute(
            sql.SQL("REVOKE CREATE, TEMPORARY ON DATABASE {} FROM PUBLIC, {}").format(db, app)
        )
        a.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        a.execute(
            "DO $$ BEGIN EXECUTE 'REVOKE CREATE ON SCHEMA public FROM pg_database_owner';"
            " EXCEPTION WHEN undefined_object THEN NULL; END $$"
        )
    try:
        yield
    finally:
        with saas.admin() as a:
            a.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT -1").format(db))
            a.execute(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(db))
            a.execute(
                sql.SQL("REVOKE CREATE, TEMPORARY ON DATABASE {} FROM PUBLIC, {}").format(db, app)
            )


def test_the_databases_owner_is_refused(saas: Scratch, owns_database: None) -> None:
    with pytest.raises(UnsafeRoleError) as err:
        _pool(saas)
    assert f"database {saas.dbname}" in str(err.value)
    assert f'REASSIGN OWNED BY "{saas.app_role}" TO CURRENT_USER;' in "\n".join(err.value.fixes)


LOCKOUT = "ALTER DATABASE {} CONNECTION LIMIT 0"


def test_alter_database_is_refused_before_sending(
    saas: Scratch, owns_database: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_column(monkeypatch, OWNED)  # the role check's control
    with _pool(saas) as pool, tenant(1), pool.connection() as c:
        for q in (LOCKOUT, "GRANT CREATE ON DATABASE {} TO CURRENT_USER"):
            with pytest.raises(UnsupportedOperation, match="not sent on a tenant lease"):
                c.execute(sql.SQL(q).format(sql.Identifier(saas.dbname)))


def test_control_the_databases_owner_locks_every_tenant_out(
    saas: Scratch, owns_database: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_column(monkeypatch, OWNED)
    _unrefused(monkeypatch, classify.PRIVILEGES)
    with _pool(saas) as pool, tenant(1), pool.connection() as c:
        c.execute(sql.SQL(LOCKOUT).format(sql.Identifier(saas.dbname)))
    with pytest.raises(psycopg.OperationalError, match="not accepting connections|too many"):
        psycopg.connect(saas.app_dsn).close()  # any tenant's next connection


# --- 2. the tenant schema's owner -----------------------------------------------------------


@pytest.fixture
def owns_schema(saas: Scratch) -> Iterator[None]:
    app = sql.Identifier(saas.app_role)
    with saas.admin() as a:
        a.execute(
            sql.SQL(
                "CREATE TABLE app.notes (tenant_id bigint NOT NULL, body text); "
                "ALTER TABLE app.notes OWNER TO {owner}; "
                "INSERT INTO app.notes VALUES (1, 'acme'), (2, 'globex'); "
                "ALTER SCHEMA app OWNER TO {app}; "
                "SET ROLE {app}; REVOKE CREATE ON SCHEMA app FROM PUBLIC, {app}; RESET ROLE"
            ).format(owner=sql.Identifier(saas.owner_role), app=app)
        )
        from tenantguard.admin import protect
        from tenantguard.core.names import QualifiedName
        from tenantguard.core.sqlbuild import grant_statements

        protect(a, ["app.notes"])
        for st in grant_statements([QualifiedName.parse("app.notes")], saas.app_role):
            a.execute(st)
    try:
        yield
    finally:
        with saas.admin() as a:
            a.execute("DROP TABLE IF EXISTS app.notes")
            a.execute(
                sql.SQL("ALTER SCHEMA app OWNER TO {}").format(sql.Identifier(saas.owner_role))
            )


def test_the_tenant_schemas_owner_is_refused(saas: Scratch, owns_schema: None) -> None:
    with pytest.raises(UnsafeRoleError, match="schema app"):
        _pool(saas)


def test_control_the_tenant_schemas_owner_drops_every_tenants_rows(
    saas: Scratch, owns_schema: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_column(monkeypatch, OWNED)
    with _pool(saas) as pool:
        with tenant(1), pool.connection() as c:
            c.execute("DROP TABLE app.notes CASCADE")  # DDL: sent, as the schema's owner
    with saas.admin() as a:
        gone = a.execute("SELECT to_regclass('app.notes') IS NULL").fetchone()
    assert gone == (True,)  # tenant 2's rows went with it


# --- 3. REPLICATION ---------------------------------------------------------------------------

SLOT = "SELECT pg_create_physical_replication_slot('tg_r18_slot')"


@pytest.fixture
def replication(saas: Scratch) -> Iterator[None]:
    app = sql.Identifier(saas.app_role)
    with saas.admin() as a:
        a.execute(sql.SQL("ALTER ROLE {} REPLICATION").format(app))
    try:
        yield
    finally:
        with saas.admin() as a:
            a.execute(sql.SQL("ALTER ROLE {} NOREPLICATION").format(app))
            a.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = 'tg_r18_slot'"
            )


def test_a_replication_login_is_refused(saas: Scratch, replication: None) -> None:
    with pytest.raises(UnsafeRoleError, match="REPLICATION"):
        _pool(saas)


def test_replication_slots_are_refused_before_sending(
    saas: Scratch, replication: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_column(monkeypatch, REPLICATION)
    with _pool(saas) as pool, tenant(1), pool.connection() as c:
        with pytest.raises(UnsupportedOperation, match="replication slots"):
            c.execute(SLOT)


def test_control_a_replication_slot_outlives_the_lease(
    saas: Scratch, replication: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "tenantguard.drivers.psycopg._pool_base.ROLE_CHECK_QUERY",
        __import__("tenantguard.core.rolecheck", fromlist=["x"]).ROLE_CHECK_QUERY.replace(
            "WHERE x.rolreplication)", "WHERE false)"
        ),
    )
    _unrefused(monkeypatch, classify.REPLICATION)
    with _pool(saas) as pool, tenant(1), pool.connection() as c:
        c.execute(SLOT)
    with saas.admin() as a:
        kept: Any = a.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tg_r18_slot'"
        ).fetchone()
    assert kept == (1,)


# --- 4. SQL text in extension functions -------------------------------------------------------

CROSSTAB = (
    "SELECT * FROM crosstab('SELECT 1, 2, set_config(''statement_timeout'', ''1'', false)') "
    "AS t(a int, b text)"
)


def test_crosstab_text_is_classified_and_connectby_is_opaque() -> None:
    assert "setting:set_config" in classify_sql(CROSSTAB)
    assert "opaque_code" in classify_sql(
        "SELECT * FROM connectby('t', 'id', 'up', '1', 0) AS c(a int)"
    )
    assert "opaque_code" in classify_sql("SELECT dblink_exec('dbname=x', 'SET x = 1')")


def test_control_crosstab_text_unclassified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classify, "_CROSSTAB_FUNCS", set())
    assert classify_sql(CROSSTAB) == frozenset()


# --- 5. owned objects of any kind ---------------------------------------------------------------


@pytest.fixture
def owns_others(saas: Scratch) -> Iterator[None]:
    app = sql.Identifier(saas.app_role)
    with saas.admin() as a:
        a.execute(
            sql.SQL(
                "CREATE SEQUENCE app.counter; ALTER SEQUENCE app.counter OWNER TO {app}; "
                "CREATE TEXT SEARCH CONFIGURATION app.words (COPY = simple); "
                "ALTER TEXT SEARCH CONFIGURATION app.words OWNER TO {app}"
            ).format(app=app)
        )
    try:
        yield
    finally:
        with saas.admin() as a:
            a.execute("DROP SEQUENCE app.counter; DROP TEXT SEARCH CONFIGURATION app.words")


def test_owned_objects_of_any_kind_are_refused(saas: Scratch, owns_others: None) -> None:
    with pytest.raises(UnsafeRoleError) as err:
        _pool(saas)
    assert "sequence app.counter" in str(err.value)
    assert "text search configuration app.words" in str(err.value)
