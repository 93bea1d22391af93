"""TGP107 cross-tenant-reference: tenant A's row references tenant B's row by foreign key."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

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
    severity=Severity.HIGH,
    tool="probe",
    summary="A row of tenant A can reference tenant B's row through a foreign key",
    description="Foreign-key checks bypass row level security. A foreign key that does not "
    "include the tenant column lets tenant A attach its rows to B's (a comment on B's "
    "invoice, a project owned by B's user), and the constraint's success or failure is an "
    "existence oracle for B's keys.",
    anti_pattern="owner_id bigint REFERENCES app.users (id)",
    best_practice="FOREIGN KEY (tenant_id, owner_id) REFERENCES app.users (tenant_id, id)",
)


_ACTIONS = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def _fix(
    tp: TableProbe,
    child: sql.Identifier,
    child_tenant: str,
    name: str,
    child_oid: int,
    pairs: dict[str, str],
) -> str:
    """Replace the key by one that includes the tenant (keeping its actions), on a unique
    key of the parent that leads with the tenant."""
    conn = tp.prober.conn
    got = conn.execute(
        "SELECT confupdtype::text, confdeltype::text FROM pg_catalog.pg_constraint "
        "WHERE conrelid = %s::oid AND conname = %s",
        (child_oid, name),
    ).fetchone()
    on_update, on_delete = got if got else ("a", "a")
    actions = "".join(
        f" ON {what} {_ACTIONS[code]}"
        for what, code in (("UPDATE", on_update), ("DELETE", on_delete))
        if code in _ACTIONS
    )
    pairs = {c: p for c, p in pairs.items() if c != child_tenant and p != tp.table.tenant_column}
    parent = tp.ident.as_string(conn)
    child_sql = child.as_string(conn)
    parent_cols = tp.quote(tp.table.tenant_column, *pairs.values())
    return "\n".join(
        [
            f"-- replace {name} with a key that includes the tenant (same actions):",
            f"ALTER TABLE {parent} ADD UNIQUE ({parent_cols});",
            f"ALTER TABLE {child_sql} DROP CONSTRAINT {tp.quote(name)};",
            f"ALTER TABLE {child_sql} ADD CONSTRAINT {tp.quote(name)} FOREIGN KEY "
            f"({tp.quote(child_tenant, *pairs)}) REFERENCES {parent} ({parent_cols}){actions};",
        ]
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
                fix=_fix(tp, child.name.ident, child.tenant_column, fk.name, fk.child_oid, pairs),
            )
        elif outcome.sqlstate == "23503" and outcome.constraint == fk.name:
            continue  # refused by this very key: safe
        elif not outcome.ok and not outcome.denied:
            tp.note(obj, outcome.error)
