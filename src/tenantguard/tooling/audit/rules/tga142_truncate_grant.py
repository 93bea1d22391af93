"""TGA142 truncate-grant: the runtime role may TRUNCATE a tenant table."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA142",
    name="truncate-grant",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="The runtime role can TRUNCATE a tenant table",
    description="TRUNCATE is not subject to row level security: one statement destroys every "
    "tenant's rows.",
    anti_pattern="GRANT ALL ON app.invoices TO app_user;",
    best_practice="GRANT SELECT, INSERT, UPDATE, DELETE ON app.invoices TO app_user;",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        if "TRUNCATE" in t.privileges:
            yield Finding(
                RULE,
                t.label,
                f"{ctx.runtime_role!r} has TRUNCATE",
                fix_sql=sql.SQL("REVOKE TRUNCATE ON {} FROM {};")
                .format(t.name.ident, sql.Identifier(ctx.runtime_role))
                .as_string(),
            )
