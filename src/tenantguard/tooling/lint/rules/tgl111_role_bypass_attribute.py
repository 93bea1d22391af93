"""TGL111 role-bypass-attribute: SUPERUSER or BYPASSRLS given to a role."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit

RULE = Rule(
    code="TGL111",
    name="role-bypass-attribute",
    severity=as_audit("TGA110"),  # one severity per defect
    tool="lint",
    summary="A migration gives SUPERUSER or BYPASSRLS to a role",
    description="Superusers and BYPASSRLS roles ignore every policy; granting either in a "
    "migration (often 'for debugging') is a permanent hole.",
    anti_pattern="ALTER ROLE app_user BYPASSRLS;",
    best_practice="Keep runtime roles NOSUPERUSER NOBYPASSRLS; use an audited break-glass role.",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.CreateRoleStmt | ast.AlterRoleStmt):
            role = n.role if isinstance(n, ast.CreateRoleStmt) else getattr(n.role, "rolename", "?")
            for o in n.options or ():
                if o.defname in ("superuser", "bypassrls") and getattr(o.arg, "boolval", False):
                    yield finding(RULE, st, f"role {role}", f"{o.defname.upper()} granted")
        elif isinstance(n, ast.GrantRoleStmt) and n.is_grant:
            for granted in n.granted_roles or ():
                name = getattr(granted, "priv_name", None)
                if name in _DATA_ROLES:
                    to = ", ".join(
                        getattr(g, "rolename", "?") or "?" for g in n.grantee_roles or ()
                    )
                    yield finding(
                        RULE, st, f"role {to}", f"member of {name}: reads or writes every row"
                    )


# Predefined roles that read or write all data, whatever the policies say.
_DATA_ROLES = {"pg_read_all_data", "pg_write_all_data"}
