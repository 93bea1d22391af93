"""Per-table tenant keys: --tenant-column TABLE=COLUMN, and keys inferred where unambiguous.

The schema is shaped like the Citus multi-tenant tutorial: the tenant root ``companies`` is
keyed by its own id, ``campaigns.company_id`` references it, and ``ads`` references
``campaigns`` through a composite key that carries the company.
"""

from __future__ import annotations

import json

from click.testing import CliRunner
from psycopg import sql

from tenantguard.admin import protect
from tenantguard.cli import main
from tenantguard.tooling.audit import audit_database
from tenantguard.tooling.probe import probe_database

CITUS = """
CREATE TABLE public.companies (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.campaigns (company_id bigint NOT NULL REFERENCES public.companies (id),
    id bigint NOT NULL, name text NOT NULL, PRIMARY KEY (company_id, id));
CREATE TABLE public.ads (company_id bigint NOT NULL, campaign_id bigint NOT NULL,
    id bigint NOT NULL, body text, PRIMARY KEY (company_id, id),
    FOREIGN KEY (company_id, campaign_id) REFERENCES public.campaigns (company_id, id));
INSERT INTO public.companies VALUES (1, 'acme'), (2, 'globex');
INSERT INTO public.campaigns VALUES (1, 1, 'a'), (2, 2, 'b');
INSERT INTO public.ads VALUES (1, 1, 1, 'x'), (2, 2, 2, 'y');
GRANT SELECT, INSERT, UPDATE, DELETE ON public.companies, public.campaigns, public.ads TO {app};
"""


def _setup(fresh) -> None:  # type: ignore[no-untyped-def]
    with fresh.admin() as conn:
        conn.execute(CITUS.replace("{app}", sql.Identifier(fresh.app_role).as_string(conn)))


def test_the_root_mapping_infers_the_children(fresh) -> None:  # type: ignore[no-untyped-def]
    _setup(fresh)
    base = ["audit", "--dsn", fresh.admin_dsn, "--app-role", fresh.app_role, "--format", "json"]
    # nothing has tenant_id: a usage error, not a clean run
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 2, r.output
    r = CliRunner().invoke(main, [*base, "--tenant-column", "public.companies=id"])
    report = json.loads(r.stdout)
    assert r.exit_code == 1, r.output
    assert report["meta"]["tenant_tables"] == 3
    assert report["meta"]["inferred_tenant_columns"] == {
        "public.campaigns": "company_id (references public.companies.id)",
        "public.ads": "company_id (references public.campaigns.company_id)",
    }
    assert "inferred tenant column: public.ads.company_id" in r.stderr
    unprotected = {f["object"] for f in report["findings"] if f["rule"] == "TGA101"}
    assert unprotected == {"public.companies", "public.campaigns", "public.ads"}


def test_protected_by_their_own_keys_audit_and_probe_clean(fresh) -> None:  # type: ignore[no-untyped-def]
    _setup(fresh)
    with fresh.admin() as conn:
        protect(conn, ["public.companies"], tenant_column="id")
        protect(conn, ["public.campaigns", "public.ads"], tenant_column="company_id")
        audit = audit_database(
            conn, app_role=fresh.app_role, tenant_columns={"public.companies": "id"}
        )
        probe = probe_database(
            conn, app_role=fresh.app_role, tenant_columns={"public.companies": "id"}
        )
    assert [(f.rule.code, f.object, f.message) for f in audit.findings] == []
    assert [(f.rule.code, f.object, f.message) for f in probe.findings] == []
    assert probe.meta["tables_probed"] == 3


def test_an_ambiguous_key_is_not_inferred(fresh) -> None:  # type: ignore[no-untyped-def]
    _setup(fresh)
    with fresh.admin() as conn:
        conn.execute(
            "CREATE TABLE public.transfers (src bigint REFERENCES public.companies (id),"
            " dst bigint REFERENCES public.companies (id), amount numeric)"
        )
        report = audit_database(
            conn, app_role=fresh.app_role, tenant_columns={"public.companies": "id"}
        )
    assert "public.transfers" not in report.meta["inferred_tenant_columns"]


def test_bad_mapping_is_a_usage_error(fresh) -> None:  # type: ignore[no-untyped-def]
    _setup(fresh)
    base = ["audit", "--dsn", fresh.admin_dsn, "--app-role", fresh.app_role]
    for bad in (["--tenant-column", "=id"], ["--tenant-column", "a", "--tenant-column", "b"]):
        r = CliRunner().invoke(main, [*base, *bad])
        assert r.exit_code == 2, r.output


def test_the_pytest_plugin_takes_mappings(fresh) -> None:  # type: ignore[no-untyped-def]
    from tenantguard.pytest_plugin import TenantguardOptions, _execute, _Target

    _setup(fresh)
    options = TenantguardOptions(tenant_column="tenant_id public.companies=id")
    report = _execute("audit", _Target(fresh.admin_dsn, fresh.app_role, None, options))
    assert report.meta["tenant_tables"] == 3
    assert set(report.meta["inferred_tenant_columns"]) == {"public.campaigns", "public.ads"}
