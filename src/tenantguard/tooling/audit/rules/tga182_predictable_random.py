"""TGA182 predictable-random: values drawn from random() on connections tenants share."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import call_name, func_names, walk

RULE = Rule(
    code="TGA182",
    name="predictable-random",
    severity=Severity.LOW,
    tool="audit",
    summary="Column defaults or functions draw values from random()",
    description="random() (and random_normal()) is one xoshiro generator per server backend, "
    "not a cryptographic one. A pooled backend serves request after request of different "
    "tenants: three values read on one lease recover its state (the sixteenth review did it in "
    "under a second), and from then on every later random() on that connection is predictable, "
    "another tenant's included, and through PgBouncer another client's. A token, code or id "
    "drawn from it can be guessed by SQL on another tenant's request. gen_random_uuid() reads "
    "the server's strong random source.",
    anti_pattern="ALTER TABLE app.invites ALTER COLUMN token SET DEFAULT md5(random()::text);",
    best_practice="ALTER TABLE app.invites ALTER COLUMN token SET DEFAULT gen_random_uuid()::text;",
)

_RANDOM = {"random", "random_normal"}

_DEFAULTS = """
SELECT d.adrelid, a.attname::text, pg_catalog.pg_get_expr(d.adbin, d.adrelid)
FROM pg_catalog.pg_attrdef d
JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
WHERE d.adrelid = ANY(%s) AND NOT a.attisdropped
ORDER BY 1, 2
"""


def _draws(schema: str | None, name: str) -> bool:
    return name in _RANDOM and schema in (None, "pg_catalog")


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    labels = {t.oid: t.label for t in ctx.tables}
    for relid, column, expr in ctx.fetch(_DEFAULTS, (list(labels),)):
        if any(_draws(s, n) for s, n in func_names(expr)):
            yield Finding(
                RULE,
                f"table {labels[relid]}",
                f"column {column} defaults to {expr}: predictable by SQL on another tenant's "
                "request on the same connection; use gen_random_uuid()",
            )
    for f in ctx.functions:
        if f.schema == "tenantguard" or not f.statements:
            continue
        calls = [call_name(n) for n in walk(f.statements) if isinstance(n, ast.FuncCall)]
        if any(_draws(s, n) for s, n in calls):
            yield Finding(
                RULE,
                f"function {f.signature}",
                "calls random(): its values are predictable by SQL on another tenant's request "
                "on the same connection; use gen_random_uuid() for anything that must not be "
                "guessed",
            )
