"""TGA101 rls-disabled: a tenant table without ROW LEVEL SECURITY enabled."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext, sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA101",
    name="rls-disabled",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="Tenant table without row level security",
    description="Without ENABLE ROW LEVEL SECURITY no policy applies: any query with a forgotten "
    "WHERE reads and writes every tenant's rows. Foreign tables (postgres_fdw, file_fdw, ...) "
    "with the tenant column are reported too: they cannot have row level security at all "
    "(critical when the runtime role can read or change them, high otherwise). Rated by what "
    "the runtime role can reach: a table it has no privilege on (or whose schema it has no "
    "USAGE on) cannot leak through it directly, so that is low, with the missing privilege "
    "named; views and SECURITY DEFINER functions over it are rated by their own rules "
    "(TGA140, TGA133).",
    anti_pattern="CREATE TABLE app.invoices (tenant_id bigint NOT NULL, ...);  -- no RLS",
    best_practice="ALTER TABLE app.invoices ENABLE ROW LEVEL SECURITY;\n"
    "ALTER TABLE app.invoices FORCE ROW LEVEL SECURITY;  -- plus tenant policies",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        if not t.rls and not t.parents:  # children: TGA104
            why = t.unreachable(ctx.runtime_role)
            if why is None:
                reach = ", ".join(sorted(t.privileges))
                message = (
                    f"row level security is disabled and the runtime role {ctx.runtime_role!r} "
                    f"has {reach} on it: a query with a forgotten WHERE reaches every tenant's rows"
                )
            else:
                message = (
                    f"row level security is disabled, but {why}: rated low, since the runtime "
                    "role cannot read or change it directly (a grant would expose every "
                    "tenant's rows; views and functions over it are rated by TGA140 / TGA133)"
                )
            yield Finding(
                RULE,
                t.label,
                message,
                severity=None if why is None else Severity.LOW,
                fix_sql=t.protect_sql(),
            )
    for t in ctx.foreign_tables:
        reach = ", ".join(sorted(t.privileges))
        child = f", a child of {', '.join(t.parents)}," if t.parents else ""
        yield Finding(
            RULE,
            t.label,
            f"foreign table{child} with {t.tenant_column}: foreign tables cannot have row level "
            "security, "
            + (
                f"and the runtime role {ctx.runtime_role!r} has {reach} on it"
                if reach
                else f"so any grant to {ctx.runtime_role!r} exposes every tenant's rows"
            )
            + ". No SQL fix exists: the fix says what to do instead",
            severity=None if reach else Severity.HIGH,
            fix_sql=sql_comment(
                "a decision for a person: a foreign table cannot have row level security, so "
                "no SQL here makes it safe. Serve its rows from a local table protected by "
                "tenantguard, or enforce the tenant on the remote server (a user mapping per "
                "tenant role), or drop it; meanwhile keep the runtime role away from it:\n"
                + sql.SQL("REVOKE ALL ON {} FROM {}, PUBLIC;")
                .format(t.name.ident, sql.Identifier(ctx.runtime_role))
                .as_string(ctx.conn)
            ),
        )
