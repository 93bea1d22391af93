"""Views read on their own: the views the runtime role can read that reach tenant rows in
ways the table pass does not attack (over a table it cannot reach or outside the scanned
schemas, or through a SECURITY DEFINER function the view calls).

A view is attacked like a table (a :class:`~tenantguard.tooling.probe._target.TableProbe`
whose table and meta describe the view), by the attacks registered ``on="view"``: tenant A
is a tenant whose rows the administrator sees through the view (or in the tenant tables it
reads, for a view without the tenant column), tenant B another, and a tenant that owns
nothing. Nothing is inserted: a view with no tenant's rows cannot be attacked, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from tenantguard.tooling.catalog import ExposingView, Table, TableMeta, load_meta
from tenantguard.tooling.probe._session import Prober, execute
from tenantguard.tooling.probe._target import CannotBuildRow, TableProbe, synthetic_tenant

__all__ = ["prepare_view"]

_TENANTS = "SELECT DISTINCT {c}::text FROM {t} WHERE {c} IS NOT NULL LIMIT 2"


def _tenants(prober: Prober, relation: sql.Composable, column: str) -> list[str]:
    """Up to two tenant ids with rows in *relation*, read as the administrator (none when
    it may not read them)."""
    query = sql.SQL(_TENANTS).format(c=sql.Identifier(column), t=relation)
    try:
        with prober.conn.transaction(force_rollback=True):  # a refusal must not end the run
            return [r[0] for r in execute(prober.conn, query).fetchall()]
    except psycopg.Error:
        return []


def prepare_view(
    prober: Prober, view: ExposingView, tenant_column: str, known: Sequence[str] = ()
) -> TableProbe:
    """Tenants A and B for *view* (inside the open, rolled-back transaction)."""
    conn = prober.conn
    oids = [view.oid, *(b.oid for b in view.bases)]
    names = {view.oid: view.name, **{b.oid: b.name for b in view.bases}}
    metas = load_meta(conn, oids, names, role=prober.app_role, tenant_column=tenant_column)
    meta: TableMeta = metas[view.oid]
    column = view.tenant_columns[0] if view.tenant_columns else ""
    if not column and not view.bases:
        raise CannotBuildRow(
            "the view has no tenant column and reads no tenant table the catalog names (only "
            "SECURITY DEFINER functions): what it returns cannot be told apart per tenant; "
            "read it as two tenants by hand"
        )
    # Tenants with rows: in the tables it reads (the view may run as an owner row level
    # security applies to, and show the administrator nothing), else in the view itself.
    found: list[str] = []
    for base in view.bases:
        found += [
            t for t in _tenants(prober, base.name.ident, base.tenant_column) if t not in found
        ]
    if not found and column:
        found = _tenants(prober, view.name.ident, column)
    found = (found or list(known))[:2]
    if not found:
        raise CannotBuildRow(
            f"the administrator sees no tenant's rows in view {view.name} nor in the tables it "
            "reads: nothing to compare (a view is never given synthetic rows)"
        )
    key = (
        meta.column(column)
        if column
        else metas[view.bases[0].oid].column(view.bases[0].tenant_column)
    )
    absent = synthetic_tenant(key, set(found))
    a, b = found[0], (found[1] if len(found) > 1 else absent)
    table = Table(
        view.oid,
        view.name,
        view.kind,
        False,
        False,
        False,
        view.owner,
        key.type,
        0,
        [],
        0.0,
        privileges={"SELECT"},
        tenant_column=column,
    )
    return TableProbe(
        prober, table, meta, metas, {}, a, b, None, {}, 0, 0, absent, False, False, view=view
    )
