"""TGL110 grant-on-all-tables: GRANT ... ON ALL TABLES IN SCHEMA."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.lint.engine import LintContext, finding
from tenantguard.tooling.lint.rules import REGISTRY

RULE = Rule(
    code="TGL110",
    name="grant-on-all-tables",
    severity=Severity.MEDIUM,
    tool="lint",
    summary="GRANT on ALL TABLES IN SCHEMA",
    description="A blanket grant reaches tables that have no RLS yet (copies, staging, logs) "
    "and every table added to the schema later is one ALTER DEFAULT PRIVILEGES away.",
    anti_pattern="GRANT SELECT ON ALL TABLES IN SCHEMA app TO app_user;",
    best_practice="GRANT SELECT, INSERT, UPDATE, DELETE ON app.invoices TO app_user;",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        if (
            isinstance(n, ast.GrantStmt)
            and n.is_grant
            and getattr(n.targtype, "name", "") == "ACL_TARGET_ALL_IN_SCHEMA"
        ):
            schemas = ", ".join(getattr(o, "sval", "?") for o in n.objects or ())
            yield finding(RULE, st, f"schema {schemas}", "GRANT ... ON ALL TABLES IN SCHEMA")
        elif (
            isinstance(n, ast.AlterDefaultPrivilegesStmt)
            and n.action is not None
            and n.action.is_grant
            and getattr(n.action.objtype, "name", "") == "OBJECT_TABLE"
        ):
            yield finding(
                RULE,
                st,
                "default privileges",
                "ALTER DEFAULT PRIVILEGES ... GRANT ... ON TABLES: every future table, tenant "
                "tables included, is granted before it has RLS",
            )
