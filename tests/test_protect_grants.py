"""``protect --grant-to``: the runtime role can insert rows whose id comes from a sequence."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from tenantguard.admin import install, protect, runtime_grants
from tenantguard.core.names import QualifiedName
from tenantguard.core.sqlbuild import InstallSpec, grant_statements

TABLES = ["app.ser", "app.idt", "app.shared"]


@pytest.fixture(scope="module")
def seq_db(scratch):  # type: ignore[no-untyped-def]
    with scratch.admin() as conn:
        install(conn, InstallSpec(app_role=scratch.app_role, owner_role=scratch.owner_role))
        conn.execute(
            """
            CREATE SCHEMA app;
            CREATE SEQUENCE public.global_ids;  -- in another schema than the table
            CREATE TABLE app.ser (tenant_id bigint NOT NULL, id bigserial PRIMARY KEY, v text);
            CREATE TABLE app.idt (
                tenant_id bigint NOT NULL,
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                v text);
            CREATE TABLE app.shared (
                tenant_id bigint NOT NULL,
                id bigint DEFAULT nextval('public.global_ids') PRIMARY KEY,
                v text);
            """
        )
        protect(conn, TABLES)
    return scratch


def _role(conn: psycopg.Connection[tuple[object, ...]], scratch, name: str) -> str:  # type: ignore[no-untyped-def]
    role = f"{name}_{scratch.suffix}"
    conn.execute(
        sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(  # the helpers' EXECUTE, no tables
            sql.Identifier(role), sql.Identifier(scratch.app_role)
        )
    )
    return role


def _insert(scratch, role: str, table: str) -> tuple[object, ...] | None:  # type: ignore[no-untyped-def]
    """As *role*, tenant 7 bound, insert a row without an id; the row's (tenant_id, id)."""
    with psycopg.connect(scratch.dsn_as(role), autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT set_config('app.tenant_id', '7', true)")
        return conn.execute(
            sql.SQL("INSERT INTO {} (tenant_id, v) VALUES (7, 'x') RETURNING tenant_id, id").format(
                QualifiedName.parse(table).ident
            )
        ).fetchone()


def test_grant_to_lets_the_runtime_role_insert_into_serial_tables(seq_db) -> None:  # type: ignore[no-untyped-def]
    names = [QualifiedName.parse(t) for t in TABLES]
    with seq_db.admin() as conn:
        control, granted = _role(conn, seq_db, "ctl"), _role(conn, seq_db, "rt")
        for stmt in grant_statements(names, control):  # the table DML alone
            conn.execute(stmt)
        stmts = runtime_grants(conn, TABLES, granted)
        for stmt in stmts:
            conn.execute(stmt)
    text = [s.as_string() for s in stmts]
    assert 'GRANT USAGE ON SEQUENCE "app"."ser_id_seq" TO "rt_' + seq_db.suffix + '"' in text
    assert any('"public"."global_ids"' in t for t in text)
    assert 'GRANT USAGE ON SCHEMA "public" TO "rt_' + seq_db.suffix + '"' in text
    assert not any("idt" in t and "SEQUENCE" in t for t in text)  # identity: nothing to grant

    # Control: without the sequence grants the first insert that omits the id fails.
    for table in ("app.ser", "app.shared"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="for sequence"):
            _insert(seq_db, control, table)
    assert _insert(seq_db, control, "app.idt") is not None  # identity draws without a check

    # With protect's grants every insert works, and RLS still pins the tenant.
    for table in TABLES:
        row = _insert(seq_db, granted, table)
        assert row is not None and row[0] == 7
    with (
        psycopg.connect(seq_db.dsn_as(granted), autocommit=True) as conn,
        conn.transaction(),
    ):
        conn.execute("SELECT set_config('app.tenant_id', '7', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("INSERT INTO app.ser (tenant_id, v) VALUES (8, 'planted')")


def test_cli_dry_run_prints_the_sequence_grants(seq_db) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.cli import main

    r = CliRunner().invoke(
        main,
        ["protect", *TABLES, "--dsn", seq_db.admin_dsn, "--grant-to", "someone", "--dry-run"],
    )
    assert r.exit_code == 0, r.output
    assert 'GRANT USAGE ON SEQUENCE "app"."ser_id_seq" TO "someone";' in r.stdout
