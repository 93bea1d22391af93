"""TGL106 security-definer-search-path: SECURITY DEFINER without SET search_path."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.lint.engine import LintContext, finding
from tenantguard.tooling.lint.rules.tgl105_immutable_setting_reader import opts

RULE = Rule(
    code="TGL106",
    name="security-definer-search-path",
    severity=Severity.MEDIUM,
    tool="lint",
    summary="SECURITY DEFINER function without SET search_path",
    description="The caller controls search_path; a definer function that resolves names "
    "through it can be tricked into running the caller's objects with the owner's rights.",
    anti_pattern="CREATE FUNCTION app.f() ... SECURITY DEFINER AS $$ ... $$;",
    best_practice="CREATE FUNCTION app.f() ... SECURITY DEFINER SET search_path = pg_catalog, app ...;",
)


def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        if not isinstance(n, ast.CreateFunctionStmt):
            continue
        o = opts(n)
        definer = getattr(o.get("security"), "boolval", False)
        pinned = any(
            o2.defname == "set" and getattr(o2.arg, "name", "") == "search_path"
            for o2 in n.options or ()
        )
        if definer and not pinned:
            name = ".".join(getattr(p, "sval", "") for p in n.funcname or ())
            yield finding(
                RULE,
                st,
                f"function {name}",
                "SECURITY DEFINER without SET search_path",
                fix=f"ALTER FUNCTION {name} SET search_path = pg_catalog, pg_temp;",
            )
