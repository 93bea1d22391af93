"""TGL115 truncate-grant: TRUNCATE granted on a tenant table (it ignores row level security)."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding, rel_name
from tenantguard.tooling.lint.severity import as_audit

RULE = Rule(
    code="TGL115",
    name="truncate-grant",
    severity=as_audit("TGA142"),  # one severity per defect
    tool="lint",
    summary="TRUNCATE granted on a tenant table (or on all tables of a schema)",
    description="TRUNCATE is not subject to row level security: one tenant's session can empty "
    "the table for every tenant. GRANT ALL includes it.",
    anti_pattern="GRANT ALL ON app.invoices TO app_user;",
    best_practice="GRANT SELECT, INSERT, UPDATE, DELETE ON app.invoices TO app_user;",
)


def _grants_truncate(n: ast.GrantStmt) -> bool:
    privileges = n.privileges  # None: ALL PRIVILEGES
    return privileges is None or any(
        getattr(p, "priv_name", None) == "truncate" for p in privileges
    )


def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        if not isinstance(n, ast.GrantStmt) or not n.is_grant or not _grants_truncate(n):
            continue
        if getattr(n.objtype, "name", "") != "OBJECT_TABLE":
            continue
        target = getattr(n.targtype, "name", "")
        if target == "ACL_TARGET_ALL_IN_SCHEMA":
            schemas = ", ".join(getattr(o, "sval", "?") for o in n.objects or ())
            yield finding(RULE, st, f"schema {schemas}", "TRUNCATE on ALL TABLES IN SCHEMA")
        elif target == "ACL_TARGET_OBJECT":
            for rel in n.objects or ():
                if isinstance(rel, ast.RangeVar) and rel_name(rel) in ctx.tenant_tables:
                    yield finding(
                        RULE,
                        st,
                        rel_name(rel),
                        "TRUNCATE (or ALL) granted: empties every tenant's rows",
                        fix=f"REVOKE TRUNCATE ON {rel_name(rel)} FROM ...;",
                    )
