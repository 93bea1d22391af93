"""uuid and text tenant ids end to end, and a custom binding step."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from tenantguard import InvalidTenantId, TenantContext, TenantPool, tenant
from tenantguard.admin import install, protect
from tenantguard.core.names import QualifiedName
from tenantguard.core.sqlbuild import InstallSpec, grant_statements
from tenantguard.drivers.psycopg import fast_path

# What only the fast path does (cursor reuse, the prepared binding): checked where it is on;
# the pass with TENANTGUARD_FAST_PATH=0 runs the rest of this module on the public API.
FAST_ONLY = pytest.mark.skipif(
    not fast_path()[0], reason=f"tests the fast path, which is off: {fast_path()[1]}"
)


A, B = uuid.UUID(int=1), uuid.UUID(int=2)


@pytest.fixture(scope="module")
def kinds(scratch):  # type: ignore[no-untyped-def]
    with scratch.admin() as conn:
        install(conn, InstallSpec(app_role=scratch.app_role, owner_role=scratch.owner_role))
        conn.execute("CREATE TABLE public.u_docs (tenant_id uuid NOT NULL, id int PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE public.t_docs (tenant_id varchar(64) NOT NULL, id int PRIMARY KEY)"
        )
        conn.execute("INSERT INTO public.u_docs VALUES (%s, 1), (%s, 2), (%s, 3)", (A, B, B))
        conn.execute("INSERT INTO public.t_docs VALUES ('acme', 1), ('globex', 2), ('globex', 3)")
        for t in ("u_docs", "t_docs"):
            conn.execute(
                sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    sql.Identifier("public", t), sql.Identifier(scratch.owner_role)
                )
            )
        protect(conn, ["public.u_docs", "public.t_docs"])
        for stmt in grant_statements(
            [QualifiedName("public", "u_docs"), QualifiedName("public", "t_docs")], scratch.app_role
        ):
            conn.execute(stmt)
    return scratch


def test_uuid_tenants(kinds) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(kinds.app_dsn, min_size=1, max_size=1, tenant_kind="uuid") as pool:
        with tenant(str(B)), pool.connection() as conn:  # a string from a header is fine
            assert conn.execute("SELECT id FROM public.u_docs ORDER BY id").fetchall() == [
                (2,),
                (3,),
            ]
        with tenant(A), pool.connection() as conn:
            assert conn.execute("SELECT id FROM public.u_docs").fetchall() == [(1,)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO public.u_docs VALUES (%s, 9)", (B,))
        with pytest.raises(InvalidTenantId, match="UUID"):
            with tenant("not-a-uuid"), pool.connection():
                pass


def test_text_tenants_on_varchar_column(kinds) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(kinds.app_dsn, min_size=1, max_size=1, tenant_kind="text") as pool:
        with tenant("globex"), pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM public.t_docs").fetchone()[0] == 2
        with pytest.raises(InvalidTenantId):
            with tenant(" acme"), pool.connection():  # surrounding blanks are refused
                pass


@FAST_ONLY
def test_non_ascii_text_tenant_on_the_fast_path(kinds) -> None:  # type: ignore[no-untyped-def]
    with kinds.admin() as conn:
        conn.execute("INSERT INTO public.t_docs VALUES ('zürich-ä', 40), ('zürich-ä', 41)")
    with TenantPool(kinds.app_dsn, min_size=1, max_size=1, tenant_kind="text") as pool:
        with tenant("zürich-ä"), pool.connection() as conn:
            assert conn._tg_state is not None
            rows = conn.execute("SELECT tenant_id, id FROM public.t_docs ORDER BY id").fetchall()
            assert rows == [("zürich-ä", 40), ("zürich-ä", 41)]
            # Not pre-encoded: the driver encodes it in the connection's encoding.
            assert conn._tg_state.binds[("zürich-ä", str, "text", None)][1] is None
        with tenant("zürich"), pool.connection() as conn:  # a prefix is another tenant
            assert conn.execute("SELECT count(*) FROM public.t_docs").fetchone()[0] == 0


class HeaderBinder:
    """A custom binding step: also records the request id, transaction-local."""

    def bind_query(self, ctx: TenantContext):  # type: ignore[no-untyped-def]
        return (
            "SELECT set_config('app.tenant_id', %s, true), set_config('app.user_id', %s, true), "
            "set_config('app.request', 'r-1', true)",
            (str(ctx.tenant), ctx.user or ""),
        )


def test_custom_binder_is_used(kinds) -> None:  # type: ignore[no-untyped-def]
    with TenantPool(
        kinds.app_dsn, min_size=1, max_size=1, binder=HeaderBinder(), tenant_kind="text"
    ) as pool:
        with tenant("acme"), pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*), current_setting('app.request') FROM public.t_docs"
            ).fetchone()
            assert row == (1, "r-1")
