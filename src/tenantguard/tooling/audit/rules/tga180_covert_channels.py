"""TGA180 covert-channels: LISTEN/NOTIFY and advisory locks shared across tenants."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import call_name, walk

RULE = Rule(
    code="TGA180",
    name="covert-channels",
    severity=Severity.LOW,
    tool="audit",
    summary="Functions use NOTIFY or advisory locks with fixed names (channels RLS does not cover)",
    description="Channel names and advisory lock keys are database-wide: a tenant can listen on "
    "another tenant's channel or probe its locks unless names and keys include the tenant. "
    "Function bodies (LANGUAGE sql and plpgsql) are parsed with PostgreSQL's grammar; a "
    "NOTIFY statement, or a pg_notify / pg_advisory_* call whose arguments are all constants, "
    "is reported.",
    anti_pattern="PERFORM pg_notify('invoices', row.id::text);",
    best_practice="PERFORM pg_notify('invoices_' || row.tenant_id, row.id::text);",
)

_ADVISORY = {
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
}


def _constant(node: Any) -> bool:
    """No column, variable, parameter or function of the row/session in *node*."""
    for n in walk(node):
        if isinstance(n, ast.ColumnRef | ast.ParamRef | ast.SQLValueFunction):
            return False
        if isinstance(n, ast.FuncCall):
            name = call_name(n)[1]
            if name not in ("hashtext", "hashtextextended", "md5"):
                return False
    return True


def _uses(stmts: list[ast.Node]) -> list[str]:
    out: list[str] = []
    for n in walk(stmts):
        if isinstance(n, ast.NotifyStmt):
            out.append(f"NOTIFY {n.conditionname}")
        elif isinstance(n, ast.FuncCall):
            name = call_name(n)[1]
            args = list(n.args or ())
            if name == "pg_notify" and args and _constant(args[0]):
                out.append("pg_notify with a fixed channel")
            elif name in _ADVISORY and args and all(_constant(a) for a in args):
                out.append(f"{name} with a fixed key")
    return list(dict.fromkeys(out))


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for f in ctx.functions:
        if f.schema == "tenantguard" or not f.statements:
            continue
        uses = _uses(f.statements)
        if uses:
            yield Finding(
                RULE,
                f"function {f.signature}",
                f"uses {', '.join(uses)}; make channel names / lock keys tenant-specific",
            )
