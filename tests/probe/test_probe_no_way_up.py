"""The probe must not become a way up: table owners' code never runs in its session with
privileges the code's owner does not have."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from psycopg import sql

from tenantguard.admin import protect
from tenantguard.tooling.probe import probe_database

# An ordinary (SECURITY INVOKER) trigger written by the tables' owner: it leaves the
# runtime role with RESET ROLE and writes a file on the server as whoever the session is.
ESCAPE = """
CREATE TABLE public.t (tenant_id bigint NOT NULL, id bigint NOT NULL, body text, PRIMARY KEY (tenant_id, id));
INSERT INTO public.t VALUES (1, 1, 'a'), (2, 2, 'b');
CREATE FUNCTION public.escape() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RESET ROLE;
  EXECUTE format('COPY (SELECT current_user) TO %L', {path});
  RETURN NEW;
END $$;
CREATE TRIGGER escape BEFORE INSERT OR UPDATE ON public.t FOR EACH ROW EXECUTE FUNCTION public.escape();
ALTER TABLE public.t OWNER TO {owner};
ALTER FUNCTION public.escape() OWNER TO {owner};
GRANT SELECT, INSERT, UPDATE, DELETE ON public.t TO {app};
"""


@pytest.fixture
def escape(fresh):  # type: ignore[no-untyped-def]
    path = Path(f"/tmp/tenantguard-escape-{secrets.token_hex(6)}")
    with fresh.admin() as conn:
        conn.execute(
            ESCAPE.replace("{path}", sql.Literal(str(path)).as_string(conn))
            .replace("{owner}", sql.Identifier(fresh.owner_role).as_string(conn))
            .replace("{app}", sql.Identifier(fresh.app_role).as_string(conn))
        )
        protect(conn, ["public.t"])
    yield fresh, path
    if path.exists():
        os.unlink(path)


def test_owners_trigger_is_not_run_in_a_superuser_probe(escape) -> None:  # type: ignore[no-untyped-def]
    fresh, path = escape
    with fresh.admin() as conn:
        report = probe_database(conn, app_role=fresh.app_role)
    assert not path.exists(), "the owner's trigger ran with the probe's superuser session"
    found = [f for f in report.findings if f.rule.code == "TGP191"]
    assert found and "escape()" in found[0].message and "RESET ROLE" in found[0].message


def test_control_without_the_check_the_trigger_escapes(escape, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same probe with the check switched off: the file is written, as a superuser."""
    import tenantguard.tooling.probe as probe

    fresh, path = escape
    monkeypatch.setattr(probe, "foreign_code", lambda *a, **k: [])
    with fresh.admin() as conn:
        probe_database(conn, app_role=fresh.app_role)
        superuser = conn.execute("SELECT current_user").fetchone()
    assert path.exists() and path.read_text().strip() == superuser[0]  # type: ignore[index]


def test_the_owners_own_probe_runs_its_code(escape) -> None:  # type: ignore[no-untyped-def]
    """Probing as the code's owner (as on a managed database, where the admin owns the
    tables) gives that code nothing it did not have: the table is probed."""
    import psycopg

    fresh, _path = escape
    owner = fresh.owner_role
    with fresh.admin() as conn:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(owner)))
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(fresh.app_role), sql.Identifier(owner))
        )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(fresh.dbname), sql.Identifier(owner)
            )
        )
    with psycopg.connect(fresh.dsn_as(owner), autocommit=True) as conn:
        report = probe_database(conn, app_role=fresh.app_role)
    assert "TGP191" not in {f.rule.code for f in report.findings}, report.findings
    assert report.meta["tables_probed"] == 1


SNEAKY_POLICY = """
CREATE TABLE public.p (tenant_id bigint NOT NULL, id bigint NOT NULL, PRIMARY KEY (tenant_id, id));
INSERT INTO public.p VALUES (1, 1), (2, 2);
CREATE FUNCTION public.sneaky() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RESET ROLE;
  EXECUTE format('COPY (SELECT current_user) TO %L', {path});
  RETURN true;
END $$;
ALTER TABLE public.p OWNER TO {owner};
ALTER FUNCTION public.sneaky() OWNER TO {owner};
ALTER TABLE public.p ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.p FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON public.p USING (public.sneaky() AND tenant_id IS NOT NULL);
GRANT SELECT ON public.p TO {app};
"""


@pytest.fixture
def sneaky(fresh):  # type: ignore[no-untyped-def]
    path = Path(f"/tmp/tenantguard-escape-{secrets.token_hex(6)}")
    with fresh.admin() as conn:
        conn.execute(
            SNEAKY_POLICY.replace("{path}", sql.Literal(str(path)).as_string(conn))
            .replace("{owner}", sql.Identifier(fresh.owner_role).as_string(conn))
            .replace("{app}", sql.Identifier(fresh.app_role).as_string(conn))
        )
    yield fresh, path
    if path.exists():
        os.unlink(path)


def test_audit_live_check_does_not_run_an_owners_policy_function(sneaky) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.tooling.audit import audit_database

    fresh, path = sneaky
    with fresh.admin() as conn:
        report = audit_database(conn, app_role=fresh.app_role)
    assert not path.exists(), "the owner's policy function ran with the audit's superuser session"
    hits = [f for f in report.findings if f.rule.code == "TGA190" and f.object == "public.p"]
    assert hits and "sneaky()" in hits[0].message and "--app-dsn" in hits[0].message
    # on the runtime role's own login the check runs: RESET ROLE leads back to app_user only
    with fresh.admin() as conn:
        report = audit_database(conn, app_dsn=fresh.app_dsn)
    assert not path.exists()
    assert "TGA190" not in {f.rule.code for f in report.findings if f.object == "public.p"}


def test_control_audit_without_the_check_the_policy_function_escapes(sneaky, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tenantguard.tooling.audit.rules.tga120_fail_open_policy as tga120
    from tenantguard.tooling.audit import audit_database

    fresh, path = sneaky
    monkeypatch.setattr(tga120, "foreign_code", lambda *a, **k: [])
    with fresh.admin() as conn:
        audit_database(conn, app_role=fresh.app_role)
        superuser = conn.execute("SELECT current_user").fetchone()
    assert path.exists() and path.read_text().strip() == superuser[0]  # type: ignore[index]
