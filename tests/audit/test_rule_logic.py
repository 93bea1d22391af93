"""The policy-logic and function rules on many shapes at once (one scratch database):
what they must flag, and the look-alikes they must leave alone."""

from __future__ import annotations

from collections import defaultdict

import pytest
from psycopg import sql

from tenantguard.admin import install, protect
from tenantguard.core.sqlbuild import InstallSpec
from tenantguard.tooling.audit import audit_database

T = "tenant_id bigint NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
PIN = "tenant_id = (SELECT current_setting('app.tenant_id')::bigint)"

SETUP = """
CREATE ROLE {group} NOLOGIN;
GRANT {group} TO {app};
CREATE TABLE public.memberships (user_id text NOT NULL, tenant_id bigint NOT NULL);
CREATE TABLE public.open_memberships (user_id text NOT NULL, tenant_id bigint NOT NULL);
CREATE TABLE public.statuses (s text PRIMARY KEY);
GRANT SELECT ON public.memberships TO {app};
GRANT SELECT, INSERT, UPDATE ON public.open_memberships, public.statuses TO {app};
CREATE FUNCTION public.my_tenants() RETURNS SETOF bigint LANGUAGE sql STABLE
  AS $$ SELECT tenant_id FROM public.open_memberships WHERE user_id = current_setting('app.user_id') $$;
"""
TABLES = {
    # name: (extra columns, policies after ENABLE + FORCE)
    "p_or": (
        ", is_public boolean",
        [f"USING ({PIN}) WITH CHECK ({PIN})", f"FOR SELECT USING ({PIN} OR is_public)"],
    ),
    "p_notnull": ("", ["USING (tenant_id IS NOT NULL) WITH CHECK (tenant_id IS NOT NULL)"]),
    "p_group": ("", [f"USING ({PIN}) WITH CHECK ({PIN})", "FOR SELECT TO {group} USING (true)"]),
    "p_insert": (
        "",
        [f"USING ({PIN}) WITH CHECK ({PIN})", "FOR INSERT WITH CHECK (tenant_id > 0)"],
    ),
    "p_exists": (
        "",
        [
            "USING (EXISTS (SELECT 1 FROM public.memberships m WHERE m.tenant_id = x.tenant_id "
            "AND m.user_id = current_setting('app.user_id')))"
        ],
    ),
    "p_exists_w": (
        "",
        [
            "USING (EXISTS (SELECT 1 FROM public.open_memberships m WHERE m.tenant_id = "
            "x.tenant_id AND m.user_id = current_setting('app.user_id')))"
        ],
    ),
    "p_lookup": (", status text", [f"USING ({PIN} AND status IN (SELECT s FROM public.statuses))"]),
    "p_helper": ("", ["USING (tenant_id IN (SELECT public.my_tenants()))"]),
}
FUNCTIONS = """
CREATE TABLE public.ledger ({T}, amount numeric);
CREATE FUNCTION public.f_sql() RETURNS bigint LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog AS $$ SELECT count(*) FROM public.ledger $$;
CREATE FUNCTION public.f_atomic() RETURNS bigint LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog BEGIN ATOMIC SELECT count(*) FROM public.ledger; END;
CREATE FUNCTION public.f_invoker() RETURNS bigint LANGUAGE sql
  AS $$ SELECT count(*) FROM public.ledger $$;
CREATE FUNCTION public.f_revoked() RETURNS bigint LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog AS $$ SELECT count(*) FROM public.ledger $$;
REVOKE EXECUTE ON FUNCTION public.f_revoked() FROM PUBLIC;
CREATE FUNCTION public.f_set() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog AS $$ BEGIN SET app.tenant_id = '1'; END $$;
CREATE FUNCTION public.f_config() RETURNS bigint LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog SET app.tenant_id = '1' AS $$ SELECT 1::bigint $$;
CREATE FUNCTION public.f_dynamic() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog AS $$ BEGIN EXECUTE 'SELECT 1'; END $$;
CREATE FUNCTION public.n_fixed(i bigint) RETURNS void LANGUAGE plpgsql
  AS $$ BEGIN PERFORM pg_notify('invoices', i::text); END $$;
CREATE FUNCTION public.n_stmt() RETURNS void LANGUAGE sql AS $$ NOTIFY invoices $$;
CREATE FUNCTION public.n_lock() RETURNS void LANGUAGE sql
  AS $$ SELECT pg_advisory_xact_lock(hashtext('billing')) $$;
CREATE FUNCTION public.n_tenant(t bigint, i bigint) RETURNS void LANGUAGE plpgsql
  AS $$ BEGIN PERFORM pg_notify('invoices_' || t, i::text);
             PERFORM pg_advisory_xact_lock(t::int, 42); END $$;
CREATE FUNCTION public.f_reads_setting() RETURNS text LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog AS $$ SELECT current_setting('app.tenant_id', true) $$;
"""
OWNED = """
CREATE TABLE public.owned ({T});
ALTER TABLE public.owned ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON public.owned USING ({PIN}) WITH CHECK ({PIN});
CREATE FUNCTION public.f_owner() RETURNS bigint LANGUAGE sql SECURITY DEFINER
  SET search_path = pg_catalog AS $$ SELECT count(*) FROM public.owned $$;
"""

EXPECTED = {
    "TGA124": {
        "policy pol1 on public.p_or",
        "policy pol0 on public.p_notnull",
        "policy pol1 on public.p_group",
        "policy pol1 on public.p_insert",
    },
    "TGA125": {"policy pol0 on public.p_exists_w", "policy pol0 on public.p_helper"},
    "TGA133": {"function f_sql()", "function f_atomic()", "function f_owner()"},
    "TGA134": {"function f_set()", "function f_config()"},
    "TGA180": {"function n_fixed(bigint)", "function n_stmt()", "function n_lock()"},
}


@pytest.fixture(scope="module")
def report(server_dsn):  # type: ignore[no-untyped-def]
    from conftest import make_scratch

    gen = make_scratch(server_dsn)
    s = next(gen)
    try:
        group = f"tg_group_{s.suffix}"
        names = {
            "{app}": sql.Identifier(s.app_role).as_string(),
            "{owner}": sql.Identifier(s.owner_role).as_string(),
            "{group}": sql.Identifier(group).as_string(),
        }

        def q(text: str) -> str:
            for k, v in names.items():
                text = text.replace(k, v)
            return text

        with s.admin() as conn:
            install(conn, InstallSpec(app_role=s.app_role, owner_role=s.owner_role))
            conn.execute(q(SETUP))
            for name, (cols, policies) in TABLES.items():
                conn.execute(f"CREATE TABLE public.{name} ({T}{cols})")
                conn.execute(q(f"GRANT SELECT, INSERT, UPDATE, DELETE ON public.{name} TO {{app}}"))
                conn.execute(f"ALTER TABLE public.{name} ENABLE ROW LEVEL SECURITY")
                conn.execute(f"ALTER TABLE public.{name} FORCE ROW LEVEL SECURITY")
                for i, pol in enumerate(policies):
                    pol = pol.replace("x.tenant_id", f"{name}.tenant_id")  # the outer row
                    conn.execute(q(f"CREATE POLICY pol{i} ON public.{name} {pol}"))
            # Look-alike with the guard: a loose permissive policy ANDed with tg_tenant_guard.
            conn.execute(f"CREATE TABLE public.p_guarded ({T})")
            protect(conn, ["public.p_guarded"])
            conn.execute("CREATE POLICY loose ON public.p_guarded USING (tenant_id IS NOT NULL)")
            conn.execute(FUNCTIONS.format(T=T))
            protect(conn, ["public.ledger"])
            conn.execute(q("GRANT CREATE ON SCHEMA public TO {owner}"))
            with conn.transaction():
                conn.execute(q("SET LOCAL ROLE {owner}"))
                conn.execute(OWNED.format(T=T, PIN=PIN))
            yield audit_database(conn, app_role=s.app_role)
    finally:
        gen.close()


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_flags_exactly(report, code: str) -> None:  # type: ignore[no-untyped-def]
    got: dict[str, set[str]] = defaultdict(set)
    for f in report.findings:
        got[f.rule.code].add(f.object)
    assert got[code] == EXPECTED[code], [
        (f.object, f.message) for f in report.findings if f.rule.code == code
    ]


def test_severities(report) -> None:  # type: ignore[no-untyped-def]
    levels = {(f.rule.code, f.object): str(f.level) for f in report.findings}
    assert levels[("TGA124", "policy pol1 on public.p_or")] == "critical"
    assert levels[("TGA124", "policy pol1 on public.p_insert")] == "high"  # WITH CHECK only
