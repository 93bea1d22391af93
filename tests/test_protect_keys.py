"""Per-table tenant keys for ``protect`` (the Citus tutorial's companies / campaigns / ads),
and lint's fix SQL for such tables, run as pasted."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from tenantguard.admin import install
from tenantguard.cli import main
from tenantguard.core.sqlbuild import InstallSpec
from tenantguard.tooling.lint import lint_paths

CITUS = """
CREATE TABLE public.companies (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.campaigns (
  id bigserial, company_id bigint REFERENCES public.companies (id), name text NOT NULL,
  PRIMARY KEY (company_id, id));
CREATE TABLE public.ads (
  id bigserial, company_id bigint, campaign_id bigint, name text NOT NULL,
  PRIMARY KEY (company_id, id),
  FOREIGN KEY (company_id, campaign_id) REFERENCES public.campaigns (company_id, id));
"""
TABLES = ["public.companies", "public.campaigns", "public.ads"]


@pytest.fixture
def citus(scratch):  # type: ignore[no-untyped-def]
    with scratch.admin() as conn:
        conn.execute("DROP TABLE IF EXISTS public.ads, public.campaigns, public.companies")
        install(conn, InstallSpec(app_role=scratch.app_role, owner_role=scratch.owner_role))
        conn.execute(CITUS)
        conn.execute("INSERT INTO public.companies VALUES (1, 'acme'), (2, 'globex')")
        conn.execute(
            "INSERT INTO public.campaigns (company_id, name) VALUES (1, 'a1'), (2, 'g1'), (2, 'g2')"
        )
        conn.execute(
            "INSERT INTO public.ads (company_id, campaign_id, name) "
            "SELECT company_id, id, name || '-ad' FROM public.campaigns"
        )
    return scratch


def _as_tenant(scratch, tenant: int, query: str) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    with scratch.app() as conn, conn.transaction():
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant),))
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else [(cur.rowcount,)]


def test_protect_with_per_table_keys(citus) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    args = ["--dsn", citus.admin_dsn, "--tenant-column", "company_id"]
    args += ["--tenant-column", "public.companies=id", "--grant-to", citus.app_role]
    # Control: granted but not protected, tenant 1 sees and changes every company's rows.
    with citus.admin() as conn:
        for t in TABLES:
            conn.execute(
                sql.SQL("GRANT SELECT, UPDATE ON {} TO {}").format(
                    sql.Identifier(*t.split(".")), sql.Identifier(citus.app_role)
                )
            )
    assert _as_tenant(citus, 1, "SELECT count(*) FROM public.companies") == [(2,)]
    assert _as_tenant(citus, 1, "UPDATE public.companies SET name = 'x' WHERE id = 2") == [(1,)]

    r = runner.invoke(main, ["protect", *TABLES, *args])
    assert r.exit_code == 0, r.output
    assert _as_tenant(citus, 1, "SELECT name FROM public.companies") == [("acme",)]
    assert _as_tenant(citus, 1, "SELECT name FROM public.campaigns") == [("a1",)]
    assert _as_tenant(citus, 2, "SELECT count(*) FROM public.ads") == [(2,)]
    assert _as_tenant(citus, 1, "UPDATE public.companies SET name = 'x' WHERE id = 2") == [(0,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        _as_tenant(citus, 1, "UPDATE public.companies SET id = 3")  # takes no other id
    # Idempotent with the same keys.
    r = runner.invoke(main, ["protect", *TABLES, *args, "--dry-run"])
    assert r.exit_code == 0 and "POLICY" not in r.stdout and "ROW LEVEL" not in r.stdout


def test_lints_fix_for_a_mapped_table_runs_as_pasted(citus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "001.sql"
    f.write_text(CITUS)
    report = lint_paths([f], tenant_columns={"public.companies": "id"})
    fixes = {x.object: x.fix_sql for x in report.findings if x.rule.code == "TGL101"}
    assert set(fixes) == set(TABLES)
    with citus.admin() as conn:
        for fix in fixes.values():
            assert fix is not None
            conn.execute(fix)  # as printed, comment line included
    # protect with the same keys finds nothing left to do, and lint of the fixed files is clean
    keys = ["--tenant-column", "company_id", "--tenant-column", "public.companies=id"]
    r = CliRunner().invoke(main, ["protect", *TABLES, "--dsn", citus.admin_dsn, "--dry-run", *keys])
    assert r.exit_code == 0 and r.stdout.strip() == "-- nothing to do", r.output
    f.write_text(CITUS + "\n".join(x for x in fixes.values() if x))
    fixed = lint_paths([f], tenant_columns={"public.companies": "id"})
    assert [(x.rule.code, x.message) for x in fixed.findings] == []
