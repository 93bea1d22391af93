"""TGL105 immutable-setting-reader: an IMMUTABLE function reads a setting."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding, function_ref, later_alter_function
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit

RULE = Rule(
    code="TGL105",
    name="immutable-setting-reader",
    severity=as_audit("TGA130"),  # one severity per defect
    tool="lint",
    summary="IMMUTABLE function reads current_setting()",
    description="IMMUTABLE results may be folded into cached generic plans, so the tenant read "
    "once is reused for the next tenant on the same connection.",
    anti_pattern="CREATE FUNCTION app.tenant() RETURNS bigint LANGUAGE sql IMMUTABLE AS\n"
    "$$ SELECT current_setting('app.tenant_id')::bigint $$;",
    best_practice="... LANGUAGE sql STABLE AS $$ ... $$;",
)


def opts(n: ast.CreateFunctionStmt) -> dict[str, object]:
    return {o.defname: o.arg for o in n.options or ()}


def body(n: ast.CreateFunctionStmt) -> str:
    arg = opts(n).get("as")
    parts = arg if isinstance(arg, tuple | list) else (arg,)
    return " ".join(getattr(p, "sval", "") or "" for p in parts if p is not None)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.CreateFunctionStmt):
            vol = getattr(opts(n).get("volatility"), "sval", "")
            # the body is a string literal (SQL or plpgsql source); a substring test is enough
            if vol == "immutable" and "current_setting" in body(n).lower():
                later = [
                    getattr(o.arg, "sval", "")
                    for o in later_alter_function(ctx, st, n)
                    if o.defname == "volatility"
                ]
                if later and later[-1] != "immutable":
                    continue  # a later ALTER FUNCTION ... STABLE (or VOLATILE) fixed it
                name = ".".join(getattr(p, "sval", "") for p in n.funcname or ())
                yield finding(
                    RULE,
                    st,
                    f"function {name}",
                    "IMMUTABLE but reads current_setting()",
                    fix=f"ALTER FUNCTION {function_ref(n)} STABLE;",
                )
