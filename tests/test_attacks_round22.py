"""The twenty-second adversarial review.

1. ``table_to_xml('12048', ...)``: regclass reads a string of digits as an oid, so
   ``pg_sequences`` was read by number past the check by name (default configuration). A
   relation named by digits is code the classifier cannot see (control: sent).
2. With temporary objects allowed, ``CREATE DOMAIN pg_temp.text AS varchar(20)`` made every
   unqualified ``::text`` cut its string: the server ran a prefix of what was classified.
   Only casts to ``pg_catalog.<type>`` (as pglast writes keyword types) are read through.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from conftest import Scratch
from tenantguard import TenantPool, tenant
from tenantguard.core import classify
from tenantguard.core.classify import classify_sql
from tenantguard.errors import SessionStateRefused


def _oid(s: Scratch) -> str:
    with s.admin() as a:
        row: Any = a.execute("SELECT 'pg_catalog.pg_sequences'::regclass::oid::text").fetchone()
    return str(row[0])


def test_a_relation_named_by_its_oid_is_opaque(saas: Scratch) -> None:
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c, pytest.raises(SessionStateRefused):
            c.execute(f"SELECT table_to_xml('{_oid(saas)}', true, false, '')")


def test_control_a_relation_named_by_its_oid_reads_pg_sequences(
    saas: Scratch, monkeypatch: pytest.MonkeyPatch
) -> None:
    flagged = classify._node_effects
    monkeypatch.setattr(classify, "_node_effects", lambda n: flagged(n) - {"opaque_code"})
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c:
            try:
                out: Any = c.execute(
                    f"SELECT table_to_xml('{_oid(saas)}', true, false, '')"
                ).fetchone()
            except psycopg.errors.FeatureNotSupported:  # a server built without libxml
                return  # sent: the server, not tenantguard, refused it
    assert "pg_sequences" in str(out[0])


@pytest.mark.parametrize("cast", ['"TEXT"', "pg_temp.text", "public.text", "text", "regclass"])
def test_only_pg_catalog_casts_are_read_through(cast: str) -> None:
    q = f"SELECT query_to_xml('SELECT (0.5).setseedXX'::{cast}, true, false, '')"
    assert classify_sql(q) == frozenset({"opaque_code"})
    # the control: the same text under pg_catalog's own type is read, and clean
    assert classify_sql(q.replace(f"::{cast}", "::pg_catalog.text")) == frozenset()
