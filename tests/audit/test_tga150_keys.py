"""TGA150 on foreign keys matches each table's own tenant key (``--tenant-column
TABLE=COLUMN``), not the default column, and its fix runs as pasted and clears it."""

from __future__ import annotations

from psycopg import sql

from tenantguard.admin import protect
from tenantguard.tooling.audit import audit_database

# The Citus tutorial's shape: companies keyed by id, campaigns and ads by company_id.
SCHEMA = """
CREATE TABLE public.companies (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.campaigns (company_id bigint NOT NULL REFERENCES public.companies (id),
                               id bigint NOT NULL, name text, PRIMARY KEY (company_id, id),
                               UNIQUE (id));
CREATE TABLE public.ads (company_id bigint NOT NULL, id bigint NOT NULL,
                         campaign_id bigint NOT NULL REFERENCES public.campaigns (id) ON DELETE CASCADE,
                         PRIMARY KEY (company_id, id));
GRANT SELECT, INSERT, UPDATE, DELETE ON public.companies, public.campaigns, public.ads TO {app};
"""
KEYS = {"public.companies": "id", "public.campaigns": "company_id", "public.ads": "company_id"}


def _fk_findings(conn, app: str) -> list:  # type: ignore[no-untyped-def,type-arg]
    report = audit_database(conn, app_role=app, tenant_columns=KEYS)
    return [f for f in report.findings if f.rule.code == "TGA150" and "foreign key" in f.object]


def test_foreign_keys_use_each_tables_own_key_and_the_fix_clears_them(fresh) -> None:  # type: ignore[no-untyped-def]
    with fresh.admin() as conn:
        conn.execute(SCHEMA.replace("{app}", sql.Identifier(fresh.app_role).as_string(conn)))
        protect(conn, ["public.companies"], tenant_column="id")
        protect(conn, ["public.campaigns", "public.ads"], tenant_column="company_id")
        found = _fk_findings(conn, fresh.app_role)
        # campaigns -> companies matches company_id to the root's own key: not reported
        assert [f.object for f in found] == ["foreign key ads_campaign_id_fkey on public.ads"]
        fix = found[0].fix_sql or ""
        assert "company_id" in found[0].message and "ON DELETE CASCADE" in fix
        assert (
            '("company_id", "campaign_id") REFERENCES "public"."campaigns" ("company_id", "id")'
            in fix
        )
        conn.execute(fix)
        assert _fk_findings(conn, fresh.app_role) == []


def test_a_default_key_and_one_mapping_find_the_same_key(fresh) -> None:  # type: ignore[no-untyped-def]
    """--tenant-column company_id plus companies=id: the same one finding (the code on main
    looked for company_id in companies and skipped the key to campaigns' id alike)."""
    with fresh.admin() as conn:
        conn.execute(SCHEMA.replace("{app}", sql.Identifier(fresh.app_role).as_string(conn)))
        report = audit_database(
            conn,
            app_role=fresh.app_role,
            tenant_column="company_id",
            tenant_columns={"public.companies": "id"},
        )
    fks = [
        f.object for f in report.findings if f.rule.code == "TGA150" and "foreign key" in f.object
    ]
    assert fks == ["foreign key ads_campaign_id_fkey on public.ads"]
