"""TGP116 tenant-root-takeover: tenant A lists, renames or deletes tenant B's row of the
tenant root table (the table the tenant column references)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from psycopg import sql

from tenantguard.core.names import QualifiedName
from tenantguard.tooling.catalog import protect_fix_sql
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._session import execute
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP116",
    name="tenant-root-takeover",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="With tenant A bound, the tenant root table lists, renames or deletes tenant B",
    description="The probe finds the table the tenant column references (tenants.id) and, "
    "with tenant A bound, counts the other tenants' rows there, renames another tenant's id "
    "(ON UPDATE CASCADE moves that tenant's rows with it) and deletes it (ON DELETE CASCADE "
    "wipes them). Referential actions run without row level security, so only a policy on "
    "the root table itself stops this.",
    anti_pattern="CREATE TABLE app.invoices (tenant_id bigint REFERENCES app.tenants\n"
    "  ON UPDATE CASCADE ON DELETE CASCADE, ...);\n"
    "GRANT SELECT, UPDATE, DELETE ON app.tenants TO app_user;  -- no RLS on app.tenants",
    best_practice="tenantguard protect app.tenants --tenant-column id\n"
    "REVOKE UPDATE, DELETE ON app.tenants FROM app_user;",
)

_ROOT = """
SELECT n.nspname::text, r.relname::text, a.attname::text, con.conname::text,
       con.confupdtype::text, con.confdeltype::text, pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class r ON r.oid = con.confrelid
JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum = con.confkey[1]
WHERE con.contype = 'f' AND con.conrelid = %s::oid AND cardinality(con.conkey) = 1
  AND NOT (con.confrelid = ANY(%s::oid[]))
  AND con.conkey[1] = (SELECT attnum FROM pg_catalog.pg_attribute
                       WHERE attrelid = con.conrelid AND attname = %s)
ORDER BY 1, 2, 4
LIMIT 1
"""


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    conn = tp.prober.conn
    found = execute(
        conn, sql.SQL(_ROOT), [tp.table.oid, list(tp.tables), tp.table.tenant_column]
    ).fetchone()
    if found is None:
        return
    schema, name, key, fk, on_update, on_delete, key_type = found
    label = f"{schema}.{name}"
    if label in tp.prober.seen:
        return  # one root table, attacked once per run
    tp.prober.seen.add(label)
    root, col = sql.Identifier(schema, name), sql.Identifier(key)
    try:
        with conn.transaction():
            victim = execute(
                conn,
                sql.SQL("SELECT {}::text FROM {} WHERE {}::text <> %s LIMIT 1").format(
                    col, root, col
                ),
                [tp.tenant_a],
            ).fetchone()
    except psycopg.Error as exc:
        tp.note(f"tenant root table {label}", str(exc).splitlines()[0])
        return
    if victim is None:
        tp.note(f"tenant root table {label}", "it has no row of another tenant to attack")
        return
    other = victim[0]
    fix = (
        "-- what tenantguard protect runs (after tenantguard install), keyed by its own id:\n"
        + protect_fix_sql(QualifiedName(schema, name), key, key_type, (key,))
        + "\n"
        + sql.SQL("REVOKE UPDATE, DELETE ON {} FROM {};")
        .format(root, sql.Identifier(tp.prober.app_role))
        .as_string(conn)
    )
    attempts = [
        (
            sql.SQL("SELECT count(*) FROM {} WHERE {}::text <> %s").format(root, col),
            [tp.tenant_a],
            "listed {n} other tenant(s)",
        ),
        (
            sql.SQL("UPDATE {} SET {} = %s WHERE {} = %s").format(root, col, col),
            [tp.absent_tenant, other],
            "renamed tenant {other} to {new}"
            + (f" (ON UPDATE CASCADE via {fk}: its rows move with it)" if on_update == "c" else ""),
        ),
        (
            sql.SQL("DELETE FROM {} WHERE {} = %s").format(root, col),
            [other],
            "deleted tenant {other}"
            + (f" (ON DELETE CASCADE via {fk}: its rows go with it)" if on_delete == "c" else ""),
        ),
    ]
    for query, params, said in attempts:
        outcome, evidence = tp.attempt(tp.tenant_a, query, params)
        n = int(outcome.scalar or 0) if outcome.ok and outcome.rows else outcome.rowcount
        if outcome.ok and n > 0:
            message = said.format(n=n, other=other, new=tp.absent_tenant)
            yield tp.leak(RULE, f"tenant {tp.tenant_a} {message}", evidence, obj=label, fix=fix)
        elif not outcome.ok and not outcome.denied and outcome.sqlstate != "23503":
            tp.note(f"tenant root table {label}", outcome.error)
