"""TGP112 plan-cache-reuse: a cached plan built for tenant A answers for tenant B."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP112",
    name="plan-cache-reuse",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="The same SQL text on one connection returns tenant A's rows after switching to B",
    description="Drivers prepare statements they see often (psycopg after 5 runs, JDBC, "
    "PgBouncer 1.21+), and PostgreSQL then reuses a generic plan. A policy whose tenant "
    "comes from an IMMUTABLE function is folded into that plan: the first tenant's id is "
    "baked in and served to the next tenant on the same connection. The probe prepares a "
    "query as tenant A, runs it until the plan is cached, then runs it as tenant B.",
    anti_pattern="CREATE FUNCTION app.tenant() RETURNS bigint IMMUTABLE LANGUAGE sql\n"
    "  AS $$ SELECT current_setting('app.tenant_id')::bigint $$;",
    best_practice="STABLE helpers only (tenantguard.current_tenant() is STABLE), in a scalar sub-select",
)

_MODES = ("force_generic_plan", "auto")


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    if "SELECT" not in tp.table.privileges:
        return
    p = tp.prober
    conn = p.conn
    body = sql.SQL("SELECT min({c}::text), max({c}::text), count(*) FROM {t}").format(
        c=tp.col, t=tp.ident
    )
    control, _ = tp.attempt(tp.tenant_b, body)  # unprepared, as B: must not show A already
    if not control.ok or not control.rows or tp.tenant_a in control.rows[0][:2]:
        return  # an error (fail-closed), or a leak without any caching (TGP101 reports it)
    for mode in _MODES:
        name = sql.Identifier(f"tgprobe_{secrets.token_hex(4)}")
        setup = [sql.SQL("SET LOCAL plan_cache_mode = {}").format(sql.Literal(mode))]
        execute = sql.SQL("EXECUTE {}").format(name)
        try:
            try:
                with conn.transaction(force_rollback=True):  # tenant A: plan and cache
                    p.enter(tp.tenant_a, setup)
                    conn.execute(sql.SQL("PREPARE {} AS {}").format(name, body))
                    for _ in range(6):  # past the custom-plan trials of plan_cache_mode=auto
                        conn.execute(execute)
                with conn.transaction(force_rollback=True):  # tenant B, same connection
                    p.enter(tp.tenant_b, setup)
                    got = conn.execute(execute).fetchone()
            finally:
                conn.execute(sql.SQL("DEALLOCATE {}").format(name))  # PREPARE outlives ROLLBACK
        except psycopg.Error as exc:
            tp.note(f"plan cache ({mode})", str(exc).strip().splitlines()[0])
            continue
        p.attempts += 1
        if got and tp.tenant_a in (got[0], got[1]):
            evidence = (
                f"SET ROLE {tp.quote(p.app_role)}; SET plan_cache_mode = {mode}; "
                f"BEGIN; {p.render('SELECT set_config(%s, %s, true)', [p.setting, p.bound_value(tp.tenant_a)])}; "
                f"PREPARE q AS {body.as_string(conn)}; EXECUTE q; (x6) COMMIT; "
                f"BEGIN; {p.render('SELECT set_config(%s, %s, true)', [p.setting, p.bound_value(tp.tenant_b)])}; "
                f"EXECUTE q;  -- returns tenant {tp.tenant_a}'s rows: min={got[0]} max={got[1]}"
            )
            yield tp.leak(
                RULE,
                f"with plan_cache_mode={mode}, a statement prepared under tenant {tp.tenant_a} "
                f"returned tenant {tp.tenant_a}'s rows to tenant {tp.tenant_b}",
                evidence,
                fix="-- make every function the policies call to read the tenant STABLE, not IMMUTABLE\n"
                "-- (ALTER FUNCTION ... STABLE), or use tenantguard protect's helper:\n"
                + tp.table.protect_sql(tp.meta.primary_key),
            )
            return
