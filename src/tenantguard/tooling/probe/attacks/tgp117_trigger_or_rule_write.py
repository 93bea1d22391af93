"""TGP117 trigger-or-rule-write: tenant A's write fires a trigger or rule that changes
another tenant's rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.tooling.catalog import sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._session import execute
from tenantguard.tooling.probe._target import CannotBuildRow, TableProbe, build_row, insert_sql
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP117",
    name="trigger-or-rule-write",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="With tenant A bound, a write fires a trigger or rule that changes tenant B's rows",
    description="Triggers fire whatever EXECUTE the writer has, and a SECURITY DEFINER trigger "
    "function or a rule's action runs as its owner, with that owner's row level security. "
    "On a table with triggers or rules, the probe inserts a row of tenant A carrying tenant "
    "B's values (its keys and references), and updates A's own row to B's values, then checks "
    "as the administrator whether any other tenant's rows of any tenant table changed.",
    anti_pattern="CREATE TRIGGER mark AFTER INSERT ON app.payments FOR EACH ROW\n"
    "  EXECUTE FUNCTION app.mark_paid();  -- SECURITY DEFINER, owned by postgres\n"
    "CREATE RULE mark AS ON INSERT TO app.payments DO ALSO UPDATE app.invoices ...;",
    best_practice="ALTER FUNCTION app.mark_paid() SECURITY INVOKER;  -- and no rules on "
    "tables owned by a role RLS does not apply to",
)

_FIRES = """
SELECT 'trigger ' || quote_ident(tg.tgname), p.oid::regprocedure::text, p.prosecdef
FROM pg_catalog.pg_trigger tg JOIN pg_catalog.pg_proc p ON p.oid = tg.tgfoid
WHERE tg.tgrelid = %s::oid AND NOT tg.tgisinternal AND tg.tgenabled <> 'D'
UNION ALL
SELECT 'rule ' || quote_ident(r.rulename), NULL, NULL
FROM pg_catalog.pg_rewrite r
WHERE r.ev_class = %s::oid AND r.ev_type <> '1' AND r.ev_enabled <> 'D'
ORDER BY 1
"""
_DIGEST = "SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {} x WHERE {}::text <> %s"
_MAX_ROWS = 100_000  # tables digested before and after each write


def _digest(tp: TableProbe, conn: psycopg.Connection[Any]) -> dict[str, str]:
    """md5 of every other tenant's rows, per (small enough) tenant table, as the admin."""
    out: dict[str, str] = {}
    for t in tp.tables.values():
        if t.rows_estimate > _MAX_ROWS:
            continue
        query = sql.SQL(_DIGEST).format(t.name.ident, sql.Identifier(t.tenant_column))
        try:
            with conn.transaction(force_rollback=True):
                row = execute(conn, query, [tp.tenant_a]).fetchone()
            out[t.label] = str(row[0]) if row else ""
        except psycopg.Error:
            out[t.label] = "unreadable"
    return out


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    conn = tp.prober.conn
    fires = execute(conn, sql.SQL(_FIRES), [tp.table.oid, tp.table.oid]).fetchall()
    if not fires or not {"INSERT", "UPDATE"} & tp.table.privileges:
        return
    with tp.prober.admin_view(conn):
        before = _digest(tp, conn)

    def changed(c: psycopg.Connection[Any]) -> bool:
        return _digest(tp, c) != before

    what = ", ".join(name for name, _f, _d in fires)
    definers = [f for _n, f, d in fires if d]
    fix = "\n".join(f"ALTER FUNCTION {f} SECURITY INVOKER;" for f in definers) or sql_comment(
        f"no SQL fix is printed: the actions of {what} run as the table's owner, "
        "whom row level security does not restrict here, and dropping them changes what "
        "the application's writes do. Move their work into a SECURITY INVOKER trigger (or "
        "the application) and DROP RULE, or make the table's owner a role that is neither "
        "superuser nor BYPASSRLS with FORCE ROW LEVEL SECURITY on the tables they write."
    )
    attempts: list[tuple[str, sql.Composed, list[Any]]] = []
    if "INSERT" in tp.table.privileges:
        try:
            row = build_row(tp.meta, tp.row_b, {tp.table.tenant_column: tp.tenant_a})
            attempts.append(("an INSERT carrying tenant {b}'s values", *insert_sql(tp.meta, row)))
        except CannotBuildRow as exc:
            tp.note(f"writes that fire {what}", str(exc))
    if "UPDATE" in tp.table.privileges and tp.row_a is not None:
        keys = set(tp.key_columns) | {tp.table.tenant_column}
        cols = [
            c.name
            for c in tp.meta.columns
            if c.name not in keys and not c.generated and not c.identity
        ]
        if cols:
            cond, params = tp.where_key(tp.row_a)
            query = sql.SQL("UPDATE {} SET {} WHERE {}").format(
                tp.ident,
                sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in cols),
                cond,
            )
            attempts.append(
                (
                    "an UPDATE of its own row to tenant {b}'s values",
                    query,
                    [*(tp.row_b.get(c) for c in cols), *params],
                )
            )
    for said, query, params in attempts:
        outcome, evidence = tp.attempt(tp.tenant_a, query, params, check=changed)
        if outcome.ok and outcome.landed:
            yield tp.leak(
                RULE,
                f"tenant {tp.tenant_a}'s {said.format(b=tp.tenant_b)} fired {what} and changed "
                "rows of other tenants",
                evidence,
                fix=fix,
            )
            return
        if not outcome.ok and not outcome.denied:
            tp.note(f"{said.format(b=tp.tenant_b)} (fires {what})", outcome.error)
