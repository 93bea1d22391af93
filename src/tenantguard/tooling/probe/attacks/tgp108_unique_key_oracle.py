"""TGP108 unique-key-oracle: a unique key without the tenant reveals tenant B's values."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import CannotBuildRow, TableProbe, build_row, insert_sql
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP108",
    name="unique-key-oracle",
    severity=Severity.MEDIUM,
    tool="probe",
    summary="Inserting tenant B's unique value as tenant A fails: an existence oracle",
    description="Unique constraints are checked across all rows, whatever the policies say. "
    "When a unique key leaves out the tenant column, tenant A learns whether a value (an "
    "email, a domain, an invoice number) exists in another tenant, and the error detail "
    "prints it; ON CONFLICT DO NOTHING answers the same question silently.",
    anti_pattern="CREATE TABLE app.users (tenant_id bigint, email text UNIQUE, ...);",
    best_practice="UNIQUE (tenant_id, email)",
)


def _fix(tp: TableProbe, index: str, target: str) -> str:
    """A key that leads with the tenant, in place of the one that answers across tenants
    (the old one goes: the values are then unique per tenant, no longer in the table)."""
    conn = tp.prober.conn
    got = conn.execute(
        "SELECT con.conname::text FROM pg_catalog.pg_constraint con "
        "JOIN pg_catalog.pg_class i ON i.oid = con.conindid "
        "WHERE con.conrelid = %s::oid AND i.relname = %s",
        (tp.table.oid, index),
    ).fetchone()
    table = tp.ident.as_string(conn)
    drop = (
        f"ALTER TABLE {table} DROP CONSTRAINT {tp.quote(got[0])};"
        if got
        else f"DROP INDEX {sql.Identifier(tp.table.name.schema, index).as_string(conn)};"
    )
    return "\n".join(
        [
            f"-- replace {index} with a key that leads with the tenant: the values become unique",
            "-- per tenant, no longer across the table (keep the old key only if that is required,",
            "-- and accept that it tells any tenant which values other tenants use)",
            f"CREATE UNIQUE INDEX ON {table} ({target});",
            drop,
        ]
    )


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "INSERT" not in tp.table.privileges:
        return
    for key in tp.meta.unique_keys:
        if not key.plain:
            tp.note(
                f"unique index {key.name}",
                "an expression or partial unique index is not aimed at; check that it "
                f"includes {tp.table.tenant_column}",
                Severity.LOW,
            )
            continue
        if tp.table.tenant_column in key.columns:
            continue  # B's values never collide with A's rows: no oracle, by construction
        cols = [tp.meta.column(c) for c in key.columns]
        if all(c.identity or c.has_default for c in cols):
            continue  # ids the database generates (identity, serial, gen_random_uuid()): no oracle
        overrides = {c: tp.row_b.get(c) for c in key.columns}
        overrides[tp.table.tenant_column] = tp.tenant_a
        try:
            row = build_row(tp.meta, tp.row_b, overrides)
        except CannotBuildRow as exc:
            tp.note(f"unique key {key.name}", str(exc))
            continue
        outcome, evidence = tp.attempt(tp.tenant_a, *insert_sql(tp.meta, row))
        if outcome.sqlstate == "23505" and outcome.constraint == key.name:
            target = tp.quote(tp.table.tenant_column, *key.columns)
            yield tp.leak(
                RULE,
                f"unique key {key.name} ({', '.join(key.columns)}) answers for tenant "
                f"{tp.tenant_b}: {outcome.error}",
                evidence,
                obj=f"index {key.name} on {tp.table.label}",
                fix=_fix(tp, key.name, target),
            )
        elif outcome.sqlstate == "23514" and "partition constraint" in (outcome.error or ""):
            continue  # A's rows cannot live in this partition at all
        elif not outcome.ok and not outcome.denied and outcome.sqlstate != "23505":
            tp.note(f"unique key {key.name}", outcome.error)
