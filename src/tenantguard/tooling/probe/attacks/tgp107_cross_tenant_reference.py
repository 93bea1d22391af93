"""TGP107 cross-tenant-reference: tenant A's row references tenant B's row by foreign key."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.catalog import Table, replace_foreign_key_sql
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import (
    CannotBuildRow,
    TableProbe,
    build_row,
    fetch_row,
    insert_sql,
)
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP107",
    name="cross-tenant-reference",
    severity=Severity.MEDIUM,
    tool="probe",
    summary="A row of tenant A can reference tenant B's row through a foreign key",
    description="Foreign-key checks bypass row level security. A foreign key that does not "
    "include the tenant column lets tenant A attach its rows to B's (a comment on B's "
    "invoice, a project owned by B's user), and the constraint's success or failure is an "
    "existence oracle for B's keys.",
    anti_pattern="owner_id bigint REFERENCES app.users (id)",
    best_practice="FOREIGN KEY (tenant_id, owner_id) REFERENCES app.users (tenant_id, id)",
)


def _fix(tp: TableProbe, child: Table, name: str, pairs: dict[str, str]) -> str:
    """Replace the key by one that matches the child's tenant key to the table's."""
    got = tp.prober.conn.execute(
        "SELECT confupdtype::text, confdeltype::text FROM pg_catalog.pg_constraint "
        "WHERE conrelid = %s::oid AND conname = %s",
        (child.oid, name),
    ).fetchone()
    key = tp.table.tenant_column
    rest = [(c, p) for c, p in pairs.items() if c != child.tenant_column and p != key]
    return replace_foreign_key_sql(
        tp.prober.conn,
        child.name.ident,
        name,
        [(child.tenant_column, key), *rest],
        tp.ident,
        (got[0], got[1]) if got else ("a", "a"),
    )


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    for fk in tp.meta.referenced_by:
        child = tp.tables.get(fk.child_oid)
        child_meta = tp.metas.get(fk.child_oid)
        if child is None or child_meta is None or "INSERT" not in child.privileges:
            continue
        pairs = dict(zip(fk.child_columns, fk.parent_columns, strict=True))
        if pairs.get(child.tenant_column) == tp.table.tenant_column:
            continue  # the key matches tenant to tenant: it cannot point across tenants
        overrides = {
            c: tp.row_b.get(p) for c, p in zip(fk.child_columns, fk.parent_columns, strict=True)
        }
        overrides[child.tenant_column] = tp.tenant_a
        try:
            conn = tp.prober.conn
            source = fetch_row(conn, child_meta, child.tenant_column, tp.tenant_a) or fetch_row(
                conn, child_meta, child.tenant_column, None
            )
            row = build_row(child_meta, source, overrides)
        except CannotBuildRow as exc:
            tp.note(f"foreign key {fk.name}", str(exc))
            continue
        outcome, evidence = tp.attempt(tp.tenant_a, *insert_sql(child_meta, row))
        obj = f"foreign key {fk.name} on {child.label}"
        if outcome.ok and outcome.rowcount > 0:
            yield tp.leak(
                RULE,
                f"tenant {tp.tenant_a} inserted a {child.label} row pointing at tenant "
                f"{tp.tenant_b}'s {tp.table.label} row",
                evidence,
                obj=obj,
                fix=_fix(tp, child, fk.name, pairs),
            )
        elif outcome.sqlstate == "23503" and outcome.constraint == fk.name:
            continue  # refused by this very key: safe
        elif not outcome.ok and not outcome.denied:
            tp.note(obj, outcome.error)
