"""TGL115 truncate-grant: TRUNCATE granted on a tenant table (it ignores row level security)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast
from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import (
    LintContext,
    Statement,
    finding,
    rel_name,
    statements_after,
)
from tenantguard.tooling.lint.rules import REGISTRY
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


@REGISTRY.register(RULE)
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
            grantees = [_grantee(g) for g in n.grantees or ()]
            for rel in n.objects or ():
                if isinstance(rel, ast.RangeVar) and rel_name(rel) in ctx.tenant_tables:
                    table = rel_name(rel)
                    if _revoked_later(ctx, st, table, grantees):
                        continue  # a later REVOKE TRUNCATE (or ALL) takes it back
                    schema, name = table.split(".", 1)
                    yield finding(
                        RULE,
                        st,
                        table,
                        "TRUNCATE (or ALL) granted: empties every tenant's rows",
                        fix=sql.SQL("REVOKE TRUNCATE ON {} FROM {};")
                        .format(
                            sql.Identifier(schema, name),
                            sql.SQL(", ").join(
                                sql.SQL("PUBLIC") if g is None else sql.Identifier(g)
                                for g in grantees
                            ),
                        )
                        .as_string(),
                    )


def _grantee(role: Any) -> str | None:
    """The role a RoleSpec names (None: PUBLIC)."""
    if getattr(role.roletype, "name", "") == "ROLESPEC_PUBLIC":
        return None
    return str(role.rolename)


def _revoked_later(
    ctx: LintContext, grant: Statement, table: str, grantees: list[str | None]
) -> bool:
    """Does a later REVOKE TRUNCATE (or ALL) on *table* take it back from every grantee?"""
    left = set(grantees)
    for st in statements_after(ctx, grant):
        n: Any = st.node
        if (
            isinstance(n, ast.GrantStmt)
            and not n.is_grant
            and _grants_truncate(n)
            and getattr(n.targtype, "name", "") == "ACL_TARGET_OBJECT"
            and any(isinstance(r, ast.RangeVar) and rel_name(r) == table for r in n.objects or ())
        ):
            left -= {_grantee(g) for g in n.grantees or ()}
    return not left
