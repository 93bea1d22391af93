"""TGL112 owner-to-runtime-role: a table's ownership given to the runtime role."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding, rel_name
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit

RULE = Rule(
    code="TGL112",
    name="owner-to-runtime-role",
    severity=as_audit("TGA110"),  # one severity per defect
    tool="lint",
    summary="Ownership of a table given to the runtime role (needs --app-role)",
    description="Owners are exempt from RLS unless it is forced, and can disable it or drop "
    "policies: the runtime role must own nothing.",
    anti_pattern="ALTER TABLE app.invoices OWNER TO app_user;",
    best_practice="ALTER TABLE app.invoices OWNER TO app_owner;  -- a NOLOGIN owner role",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    if not ctx.app_role:
        return
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.AlterTableStmt) and n.relation is not None:
            for cmd in n.cmds or ():
                owner = getattr(getattr(cmd, "newowner", None), "rolename", None)
                if getattr(cmd.subtype, "name", "") == "AT_ChangeOwner" and owner == ctx.app_role:
                    yield finding(
                        RULE, st, rel_name(n.relation), f"OWNER TO {owner} (the runtime role)"
                    )
        elif (
            isinstance(n, ast.AlterOwnerStmt)
            and getattr(n.objectType, "name", "") == "OBJECT_SCHEMA"
            and getattr(n.newowner, "rolename", None) == ctx.app_role
        ):
            schema = getattr(n.object, "sval", "?")
            yield finding(
                RULE,
                st,
                f"schema {schema}",
                f"OWNER TO {ctx.app_role} (the runtime role): it can drop every table in it",
            )
        elif isinstance(n, ast.GrantRoleStmt) and n.is_grant:
            grantees = {getattr(g, "rolename", None) for g in n.grantee_roles or ()}
            if ctx.app_role in grantees:
                roles = ", ".join(getattr(r, "priv_name", "?") for r in n.granted_roles or ())
                yield finding(
                    RULE,
                    st,
                    f"role {ctx.app_role}",
                    f"made a member of {roles}: the runtime role gets its privileges and, "
                    "for an owner, its exemption from row level security",
                )
