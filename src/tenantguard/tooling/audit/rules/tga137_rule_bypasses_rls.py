"""TGA137 rule-bypasses-rls: a rewrite rule on a table the runtime role writes runs its
action as the table's owner, and RLS does not apply to that owner on the tenant tables the
action reaches."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import relations_in, statements_or_none

RULE = Rule(
    code="TGA137",
    name="rule-bypasses-rls",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="A rule on the runtime role's writes acts as an owner that bypasses RLS",
    description="The actions of a rule (CREATE RULE ... DO ALSO / INSTEAD) are checked with "
    "the privileges of the table that carries the rule's owner, and its row level security "
    "too: when that owner is a superuser or BYPASSRLS, or owns a tenant table the action "
    "reaches without FORCE ROW LEVEL SECURITY, a DO ALSO UPDATE ... WHERE id = NEW.x or a DO "
    "ALSO INSERT ... SELECT reaches every tenant's rows, driven by values the writing tenant "
    "chose.",
    anti_pattern="CREATE RULE mark AS ON INSERT TO app.payments\n"
    "  DO ALSO UPDATE app.invoices SET paid = true WHERE id = NEW.invoice_id;\n"
    "-- app.payments owned by a superuser, or by app.invoices' owner without FORCE",
    best_practice="DROP RULE mark ON app.payments;  -- a SECURITY INVOKER trigger instead, or "
    "an owner subject to RLS (FORCE ROW LEVEL SECURITY on what it reaches)",
)

_RULES = """
SELECT r.rulename::text, n.nspname::text, c.relname::text,
       pg_catalog.pg_get_userbyid(c.relowner)::text, o.rolsuper OR o.rolbypassrls,
       pg_catalog.pg_get_ruledef(r.oid),
       ARRAY(SELECT p FROM unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) p
             WHERE pg_catalog.has_table_privilege(%(role)s, c.oid, p)
                OR (p IN ('INSERT', 'UPDATE')
                    AND pg_catalog.has_any_column_privilege(%(role)s, c.oid, p)))
FROM pg_catalog.pg_rewrite r
JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
WHERE r.ev_type <> '1' AND r.ev_enabled <> 'D'
  AND n.nspname <> ALL(ARRAY['pg_catalog', 'information_schema'])
ORDER BY 2, 3, 1
"""


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for rule, schema, table, owner, bypasses, definition, writes in ctx.fetch(
        _RULES, {"role": ctx.runtime_role}
    ):
        if not writes:
            continue
        # the actions only: the rule's own table is not what they reach
        stmts = statements_or_none(definition) or []
        actions = [a for s in stmts if isinstance(s, ast.RuleStmt) for a in (s.actions or ())]
        reasons: list[str] = []
        seen: set[str] = set()
        # pg_get_ruledef qualifies names the session's search_path does not reach
        for ref_schema, name in relations_in(actions):
            for t in ctx.tables_named(ref_schema, name, ctx.session_schemas):
                if not t.rls or t.label in seen:
                    continue
                seen.add(t.label)
                if bypasses:
                    why = f"owner {owner!r} is superuser or BYPASSRLS"
                else:
                    why = None
                    if not t.forced:
                        row = ctx.conn.execute(
                            "SELECT pg_catalog.pg_has_role(%s, %s, 'USAGE')", (owner, t.owner)
                        ).fetchone()
                        if row and row[0]:
                            why = f"owner {owner!r} owns it and RLS is not forced"
                if why:
                    reasons.append(f"{t.label} ({why})")
        if reasons:
            yield Finding(
                RULE,
                f"rule {rule} on {schema}.{table}",
                f"fires on {ctx.runtime_role!r}'s {', '.join(writes)} and its action reaches "
                + "; ".join(reasons),
                fix_sql=sql.SQL("DROP RULE {} ON {};")
                .format(sql.Identifier(rule), sql.Identifier(schema, table))
                .as_string(ctx.conn)
                + "\n-- or make the table's owner NOSUPERUSER NOBYPASSRLS and FORCE ROW LEVEL "
                "SECURITY on the tables the action reaches",
            )
