"""TGA136 trigger-bypasses-rls: a trigger that fires on the runtime role's writes runs a
SECURITY DEFINER function whose owner row level security does not apply to, and that
function reaches tenant tables."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import relations_in

RULE = Rule(
    code="TGA136",
    name="trigger-bypasses-rls",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="A trigger on the runtime role's writes runs as an owner that bypasses RLS",
    description="Triggers fire whatever EXECUTE privilege the writer has on their function: "
    "revoking EXECUTE from the runtime role does not stop them. A SECURITY DEFINER trigger "
    "function runs as its owner; when RLS does not apply to that owner (superuser, "
    "BYPASSRLS, or owner of a tenant table that is not FORCEd), the function's own WHERE "
    "clause is the only isolation, driven by values (NEW.*) the writing tenant chose: it "
    "updates, deletes or copies another tenant's rows. A body that cannot be analysed "
    "(dynamic SQL, another language) under such an owner is reported too.",
    anti_pattern="CREATE FUNCTION app.mark_paid() RETURNS trigger LANGUAGE plpgsql "
    "SECURITY DEFINER\n  AS $$ BEGIN UPDATE app.invoices SET paid = true WHERE id = "
    "NEW.invoice_id; RETURN NEW; END $$;  -- owned by postgres\n"
    "REVOKE EXECUTE ON FUNCTION app.mark_paid() FROM PUBLIC;  -- does not help\n"
    "CREATE TRIGGER mark AFTER INSERT ON app.payments FOR EACH ROW EXECUTE FUNCTION "
    "app.mark_paid();",
    best_practice="ALTER FUNCTION app.mark_paid() SECURITY INVOKER;  -- runs under the "
    "writer's policies",
)

_TRIGGERS = """
SELECT tg.tgname::text, n.nspname::text, c.relname::text, tg.tgfoid::int,
       ARRAY(SELECT p FROM unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
             WHERE pg_catalog.has_table_privilege(%(role)s, c.oid, p)
                OR (p IN ('INSERT', 'UPDATE')
                    AND pg_catalog.has_any_column_privilege(%(role)s, c.oid, p)))
FROM pg_catalog.pg_trigger tg
JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE NOT tg.tgisinternal AND tg.tgenabled <> 'D'
ORDER BY 2, 3, 1
"""


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    functions = {f.oid: f for f in ctx.functions}
    for tgname, schema, table, foid, writes in ctx.fetch(_TRIGGERS, {"role": ctx.runtime_role}):
        f = functions.get(foid)
        if f is None or not f.security_definer or not writes:
            continue
        on = f"trigger {tgname} on {schema}.{table}"
        fix = sql.SQL("ALTER FUNCTION {} SECURITY INVOKER;").format(f.ident).as_string()
        if f.unanalysable and f.owner_bypasses:
            yield Finding(
                RULE,
                on,
                f"fires on {ctx.runtime_role!r}'s {', '.join(writes)} and runs {f.signature} as "
                f"{f.owner!r} (superuser or BYPASSRLS), whose body the audit cannot read: "
                f"{f.unanalysable}",
                fix_sql=fix,
            )
            continue
        reasons: dict[str, str] = {}
        for ref_schema, name in relations_in(f.statements or []):
            for t in ctx.tables_named(ref_schema, name, f.lookup_path(ctx.session_schemas)):
                why = ctx.definer_bypass(f, t) if t.rls else None  # RLS off: TGA101
                if why:
                    reasons.setdefault(t.label, f"{t.label} ({why})")
        if reasons:
            yield Finding(
                RULE,
                on,
                f"fires on {ctx.runtime_role!r}'s {', '.join(writes)} whatever EXECUTE it has, "
                f"and {f.signature} reaches {'; '.join(reasons.values())}",
                fix_sql=fix
                + "\n-- or give it an owner that is NOSUPERUSER NOBYPASSRLS and FORCE ROW LEVEL "
                "SECURITY on the tables it reaches",
            )
