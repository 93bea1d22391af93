"""TGL106 security-definer-search-path: SECURITY DEFINER without SET search_path."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.stream import RawStream
from psycopg import sql

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding, function_ref, later_alter_function
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit

RULE = Rule(
    code="TGL106",
    name="security-definer-search-path",
    severity=as_audit("TGA131"),  # one severity per defect
    tool="lint",
    summary="SECURITY DEFINER function without SET search_path",
    description="The caller controls search_path; a definer function that resolves names "
    "through it can be tricked into running the caller's objects with the owner's rights.",
    anti_pattern="CREATE FUNCTION app.f() ... SECURITY DEFINER AS $$ ... $$;",
    best_practice="CREATE FUNCTION app.f() ... SECURITY DEFINER SET search_path = pg_catalog, app ...;",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.CreateFunctionStmt):
            options, parts = list(n.options or ()), n.funcname or ()
        elif isinstance(n, ast.AlterFunctionStmt):  # ALTER FUNCTION f() SECURITY DEFINER
            options, parts = list(n.actions or ()), (n.func.objname if n.func else None) or ()
        else:
            continue
        definer = any(
            o2.defname == "security" and getattr(o2.arg, "boolval", False) for o2 in options
        )
        pinned = any(
            o2.defname == "set" and getattr(o2.arg, "name", "") == "search_path" for o2 in options
        )
        if definer and not pinned:
            ref = name = ".".join(sql.Identifier(getattr(p, "sval", "")).as_string() for p in parts)
            if isinstance(n, ast.CreateFunctionStmt):
                ref = function_ref(n)
                later = later_alter_function(ctx, st, n)
                if any(
                    o.defname == "set" and getattr(o.arg, "name", "") == "search_path"
                    for o in later
                ) or any(
                    o.defname == "security" and not getattr(o.arg, "boolval", False) for o in later
                ):
                    continue  # a later ALTER FUNCTION pins search_path (or drops DEFINER)
            elif n.func is not None and not n.func.args_unspecified:
                ref = name + "(" + ", ".join(RawStream()(a) for a in n.func.objargs or ()) + ")"
            yield finding(
                RULE,
                st,
                f"function {name}",
                "SECURITY DEFINER without SET search_path",
                fix=f"ALTER FUNCTION {ref} SET search_path = pg_catalog, pg_temp;",
            )
