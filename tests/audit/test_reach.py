"""Findings rated by what the runtime role can actually reach, as the server behaves
(issue 13, "Findings a user can act on"). Each false alarm has a fixture where it is no
longer raised (or is low, with the reason in the message) and a control where the
dangerous shape is still reported, so that each test can fail."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tenantguard.admin import install, protect
from tenantguard.core.sqlbuild import InstallSpec
from tenantguard.tooling.audit import audit_database
from tenantguard.tooling.findings import Finding, Severity
from tenantguard.tooling.lint import lint_paths

T = "tenant_id bigint NOT NULL, id bigint NOT NULL, body text"
PINNED = "tenant_id = current_setting('app.tenant_id')::bigint"


def _run(s, text: str) -> None:  # type: ignore[no-untyped-def]
    with s.admin() as conn:
        conn.execute(sql.SQL(text).format(app=sql.Identifier(s.app_role)))


def _audit(s, **kwargs) -> list[Finding]:  # type: ignore[no-untyped-def]
    with s.admin() as conn:
        return audit_database(conn, app_role=s.app_role, **kwargs).findings


def _on(findings: list[Finding], code: str, obj: str) -> list[Finding]:
    return [f for f in findings if f.rule.code == code and obj in f.object]


def _as_app(s, tenant: int, statement: str) -> str | None:  # type: ignore[no-untyped-def]
    """Run *statement* as the runtime role with *tenant* bound (rolled back): None when
    it succeeds, else the error's first line."""
    with s.admin() as conn:
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(s.app_role)))
                conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant),))
                conn.execute(statement)
        except psycopg.Error as exc:
            return str(exc).splitlines()[0]
    return None


# --- a table the runtime role cannot reach (TGA101) ----------------------------------------


def test_table_without_privileges_is_low_and_says_what_is_missing(fresh) -> None:  # type: ignore[no-untyped-def]
    _run(fresh, f"CREATE TABLE public.unreached ({T}); CREATE TABLE public.reached ({T})")
    _run(fresh, "GRANT SELECT ON public.reached TO {app}")  # the control
    _run(fresh, f"CREATE SCHEMA hidden; CREATE TABLE hidden.t ({T})")
    _run(fresh, "GRANT SELECT, INSERT ON hidden.t TO {app}")  # no USAGE on the schema
    found = _audit(fresh)
    (unreached,) = _on(found, "TGA101", "public.unreached")
    assert unreached.level == Severity.LOW
    assert "has no SELECT, INSERT, UPDATE, DELETE or TRUNCATE on it" in unreached.message
    assert "rated low" in unreached.message
    (hidden,) = _on(found, "TGA101", "hidden.t")
    assert hidden.level == Severity.LOW
    assert "INSERT, SELECT on it but no USAGE on schema 'hidden'" in hidden.message
    (reached,) = _on(found, "TGA101", "public.reached")
    assert reached.level == Severity.CRITICAL and "has SELECT on it" in reached.message
    # the premise, on the server: the role really cannot read the first two
    assert "permission denied" in (_as_app(fresh, 1, "SELECT * FROM public.unreached") or "")
    assert "permission denied for schema" in (_as_app(fresh, 1, "SELECT * FROM hidden.t") or "")
    assert _as_app(fresh, 1, "SELECT * FROM public.reached") is None


# --- a security_barrier view that filters by tenant over such a table (TGA140, TGL108) ------


def test_barrier_view_that_pins_the_tenant_is_not_a_leak(fresh) -> None:  # type: ignore[no-untyped-def]
    _run(
        fresh,
        f"CREATE TABLE public.raw ({T}); INSERT INTO public.raw VALUES (1, 1, 'a'), (2, 2, 'b')",
    )
    _run(fresh, f"CREATE TABLE public.other ({T})")
    views = {
        "safe": f"WITH (security_barrier) AS SELECT * FROM public.raw WHERE {PINNED}",
        "no_barrier": f"AS SELECT * FROM public.raw WHERE {PINNED}",
        "no_filter": "WITH (security_barrier) AS SELECT * FROM public.raw",
        "loose_filter": "WITH (security_barrier) AS SELECT * FROM public.raw "
        f"WHERE {PINNED} OR body = 'shared'",
        "reads_another": "WITH (security_barrier) AS SELECT r.*, "
        f"(SELECT o.body FROM public.other o LIMIT 1) AS o FROM public.raw r WHERE r.{PINNED}",
    }
    for name, body in views.items():
        _run(fresh, f"CREATE VIEW public.{name} {body}; GRANT SELECT ON public.{name} TO {{app}}")
    found = _audit(fresh)
    views_hit = sorted(f.object for f in found if f.rule.code == "TGA140")
    assert views_hit == [f"view {n}" for n in sorted(views) if n != "safe"]
    for name in ("no_barrier", "no_filter", "loose_filter", "reads_another"):
        (hit,) = [f for f in found if f.rule.code == "TGA140" and f.object == f"view {name}"]
        assert hit.level == Severity.CRITICAL, name  # owned by the superuser, readable
    assert _on(found, "TGA101", "public.raw")[0].level == Severity.LOW  # no privilege on it
    # the premise: through the safe view, tenant 1 sees its own row only
    with fresh.admin() as conn, conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(fresh.app_role)))
        conn.execute("SELECT set_config('app.tenant_id', '1', true)")
        assert conn.execute("SELECT tenant_id FROM public.safe").fetchall() == [(1,)]


def test_lint_barrier_view_that_pins_the_tenant(tmp_path: Path) -> None:
    f = tmp_path / "001.sql"
    f.write_text(
        f"CREATE TABLE app.raw ({T});\n"
        "ALTER TABLE app.raw ENABLE ROW LEVEL SECURITY;\n"
        "ALTER TABLE app.raw FORCE ROW LEVEL SECURITY;\n"
        f"CREATE POLICY p ON app.raw USING ({PINNED}) WITH CHECK ({PINNED});\n"
        f"CREATE VIEW app.safe WITH (security_barrier) AS SELECT * FROM app.raw WHERE {PINNED};\n"
        f"CREATE VIEW app.no_barrier AS SELECT * FROM app.raw WHERE {PINNED};\n"
        "CREATE VIEW app.no_filter WITH (security_barrier) AS SELECT * FROM app.raw;\n"
    )
    report = lint_paths([f], setting="app.tenant_id")
    views = sorted(x.object for x in report.findings if x.rule.code == "TGL108")
    assert views == ["app.no_barrier", "app.no_filter"]


# --- RLS enabled and forced with no policy: deny-all (TGA103) -------------------------------


def test_deny_all_is_low_broken_not_exposed(fresh) -> None:  # type: ignore[no-untyped-def]
    _run(fresh, f"CREATE TABLE public.locked ({T}); INSERT INTO public.locked VALUES (1, 1, 'a')")
    _run(fresh, "ALTER TABLE public.locked ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY")
    _run(fresh, f"CREATE TABLE public.unforced ({T})")
    _run(fresh, "ALTER TABLE public.unforced ENABLE ROW LEVEL SECURITY")
    _run(fresh, "GRANT SELECT, INSERT ON public.locked, public.unforced TO {app}")
    found = _audit(fresh)
    (locked,) = _on(found, "TGA103", "public.locked")
    assert locked.level == Severity.LOW
    assert "deny-all" in locked.message and "broken, not exposed" in locked.message
    assert not _on(found, "TGA102", "public.locked")
    # the control: not forced, the owner is exempt: still reported (medium)
    assert [f.level for f in _on(found, "TGA102", "public.unforced")] == [Severity.MEDIUM]
    # the premise: the runtime role sees nothing and inserts nothing
    with fresh.admin() as conn, conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(fresh.app_role)))
        assert conn.execute("SELECT count(*) FROM public.locked").fetchone() == (0,)
    assert "row-level security" in (
        _as_app(fresh, 1, "INSERT INTO public.locked VALUES (1, 2)") or ""
    )


# --- a permissive FOR INSERT policy with no WITH CHECK beside a pinned one (TGA121, TGL103) -


POLICIES = f"""
ALTER TABLE public.w ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.w FORCE ROW LEVEL SECURITY;
CREATE POLICY pinned ON public.w USING ({PINNED}) WITH CHECK ({PINNED});
"""


@pytest.mark.parametrize(
    ("extra", "level", "foreign_insert_admitted"),
    [
        ("CREATE POLICY loose ON public.w FOR INSERT", Severity.LOW, False),
        ("CREATE POLICY loose ON public.w FOR INSERT WITH CHECK (true)", Severity.HIGH, True),
    ],
    ids=["no-with-check", "with-check-true"],
)
def test_insert_policy_rated_as_the_server_behaves(
    fresh, extra, level, foreign_insert_admitted
) -> None:  # type: ignore[no-untyped-def]
    _run(fresh, f"CREATE TABLE public.w ({T}); GRANT SELECT, INSERT ON public.w TO {{app}}")
    _run(fresh, POLICIES + extra)
    # the server first: can tenant 1 insert a row of tenant 2?
    foreign = _as_app(fresh, 1, "INSERT INTO public.w VALUES (2, 1, 'x')")
    assert (foreign is None) == foreign_insert_admitted, foreign
    assert _as_app(fresh, 1, "INSERT INTO public.w VALUES (1, 1, 'x')") is None
    found = _audit(fresh)
    (hit,) = _on(found, "TGA121", "policy loose")
    assert hit.level == level
    if level == Severity.LOW:
        assert "admits no row" in hit.message
        assert not _on(found, "TGA124", "policy loose")


def test_lint_insert_policy_without_with_check_is_low(tmp_path: Path) -> None:
    f = tmp_path / "001.sql"
    base = f"CREATE TABLE public.w ({T});\n" + POLICIES
    f.write_text(base + "CREATE POLICY loose ON public.w FOR INSERT;\n")
    hits = [x for x in lint_paths([f]).findings if x.rule.code == "TGL103"]
    assert [(x.level, "admits no row" in x.message) for x in hits] == [(Severity.LOW, True)]
    f.write_text(base + "CREATE POLICY loose ON public.w FOR INSERT WITH CHECK (true);\n")
    hits = [x for x in lint_paths([f]).findings if x.rule.code == "TGL103"]
    assert [x.level for x in hits] == [Severity.HIGH]


# --- the tenant root table's own keys (TGA150) ----------------------------------------------


def test_root_table_keys_are_rated_by_reach(fresh) -> None:  # type: ignore[no-untyped-def]
    _run(fresh, "CREATE TABLE public.tenants (id bigint PRIMARY KEY, name text UNIQUE)")
    _run(fresh, "CREATE TABLE public.users (tenant_id bigint NOT NULL REFERENCES public.tenants, "
         "id bigint NOT NULL, email text UNIQUE, PRIMARY KEY (tenant_id, id))")  # fmt: skip
    with fresh.admin() as conn:
        protect(conn, ["public.users"])
        protect(conn, ["public.tenants"], tenant_column="id")
    _run(fresh, "GRANT SELECT ON public.tenants TO {app}")
    _run(fresh, "GRANT SELECT, INSERT, UPDATE ON public.users TO {app}")
    mapping = {"public.tenants": "id"}
    found = _audit(fresh, tenant_columns=mapping)
    assert not _on(found, "TGA150", "public.tenants")  # read-only: tenant names are global
    # the control: a tenant table's unique email without tenant_id is still an oracle
    (email,) = _on(found, "TGA150", "public.users")
    assert email.level == Severity.MEDIUM and "existence oracle" in email.message
    _run(fresh, "GRANT INSERT, UPDATE ON public.tenants TO {app}")
    (name,) = _on(_audit(fresh, tenant_columns=mapping), "TGA150", "public.tenants")
    assert name.level == Severity.LOW and "tenant root table" in name.message
    assert (name.fix_sql or "").startswith("-- ")  # advice, not a revoke run blindly


# --- advice never harms: a superuser login (TGA110) -----------------------------------------


def test_superuser_login_gets_a_runtime_role_not_a_demotion(fresh) -> None:  # type: ignore[no-untyped-def]
    su, runtime = f"tg_su_{fresh.suffix}", f"tg_rt_{fresh.suffix}"
    _run(fresh, f"CREATE ROLE {su} LOGIN SUPERUSER; CREATE TABLE public.notes ({T})")
    with fresh.admin() as conn:
        protect(conn, ["public.notes"])
        found = audit_database(conn, app_role=su).findings
    (hit,) = [f for f in found if f.rule.code == "TGA110" and "is a superuser" in f.message]
    fix = hit.fix_sql or ""
    assert "NOSUPERUSER;" not in fix.replace("NOSUPERUSER NOBYPASSRLS", "")
    assert "ALTER ROLE" not in fix
    assert "CREATE ROLE app_runtime LOGIN NOSUPERUSER NOBYPASSRLS" in fix
    assert 'ON "public"."notes" TO app_runtime' in fix.replace("public.notes", '"public"."notes"')
    # it runs as pasted (the role renamed so that the test owns it), and the new role works
    with fresh.admin() as conn:
        conn.execute(fix.replace("app_runtime", runtime))
        assert conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s",
            (runtime,),
        ).fetchone() == (False, False, True)
        install(conn, InstallSpec(app_role=runtime, owner_role=fresh.owner_role))  # as advised
        found = audit_database(conn, app_role=runtime).findings
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(runtime)))
            conn.execute("SELECT set_config('app.tenant_id', '1', true)")
            conn.execute("SELECT count(*) FROM public.notes")  # granted, RLS applies
    assert not [f for f in found if f.rule.code == "TGA110"]


# --- one answer for the index a table needs (TGA160 and protect) ---------------------------


def test_the_audits_index_fix_is_the_index_protect_creates(fresh) -> None:  # type: ignore[no-untyped-def]
    _run(
        fresh,
        "CREATE TABLE public.orders (tenant_id bigint NOT NULL, region text NOT NULL, "
        "id bigint NOT NULL, PRIMARY KEY (region, id)); "
        "ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY",
    )
    with fresh.admin() as conn:
        plan = protect(conn, ["public.orders"], dry_run=True)
        found = audit_database(conn, app_role=fresh.app_role).findings
        (hit,) = [f for f in found if f.rule.code == "TGA160"]
        (index,) = [s for s in plan.statements if s.startswith("CREATE INDEX")]
        # the tenant, then the primary key's columns in key order: the same statement
        assert hit.fix_sql == index
        assert '("tenant_id", "region", "id")' in index
        conn.execute(hit.fix_sql or "")
        again = audit_database(conn, app_role=fresh.app_role).findings
    assert not [f for f in again if f.rule.code == "TGA160"]


def test_a_random_uuid_key_is_rated_low_and_says_why(fresh) -> None:  # type: ignore[no-untyped-def]
    _run(
        fresh,
        "CREATE TABLE public.members (id uuid DEFAULT gen_random_uuid() PRIMARY KEY, "
        "tenant_id bigint NOT NULL, email text NOT NULL UNIQUE); "
        "GRANT SELECT, INSERT, UPDATE ON public.members TO {app}",
    )
    with fresh.admin() as conn:
        protect(conn, ["public.members"])
        found = audit_database(conn, app_role=fresh.app_role).findings
    levels = {f.object.split()[1]: (f.level, f.message) for f in found if f.rule.code == "TGA150"}
    # the random surrogate key answers only for an id already known; the email is a real
    # oracle (the control: the same rule, the same table)
    assert levels["members_pkey"][0] == Severity.LOW
    assert "drawn at random" in levels["members_pkey"][1]
    assert levels["members_email_key"][0] == Severity.MEDIUM
