"""TGL113 copy-of-tenant-table: CREATE TABLE AS / LIKE copies a tenant table without RLS."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule
from tenantguard.tooling.lint.engine import LintContext, finding, rel_name
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit
from tenantguard.tooling.sqlanalysis import walk

RULE = Rule(
    code="TGL113",
    name="copy-of-tenant-table",
    severity=as_audit("TGA105"),  # one severity per defect
    tool="lint",
    summary="A copy of a tenant table (CREATE TABLE AS / LIKE) without RLS",
    description="Copies do not inherit policies: a backup or staging copy of a tenant table is "
    "readable across tenants by anyone with SELECT on it.",
    anti_pattern="CREATE TABLE app.invoices_backup AS SELECT * FROM app.invoices;",
    best_practice="Protect the copy in the same migration, or keep it out of the app's reach.",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        n = st.node
        target, sources = None, set()
        if isinstance(n, ast.CreateTableAsStmt) and n.into is not None:
            target = rel_name(n.into.rel)
            sources = {rel_name(r) for r in walk(n.query) if isinstance(r, ast.RangeVar)}
        elif isinstance(n, ast.SelectStmt) and n.intoClause is not None:  # SELECT ... INTO
            target = rel_name(n.intoClause.rel)
            sources = {rel_name(r) for r in walk(n.fromClause) if isinstance(r, ast.RangeVar)}
        elif isinstance(n, ast.CreateStmt):
            target = rel_name(n.relation)
            sources = {
                rel_name(e.relation)
                for e in n.tableElts or ()
                if isinstance(e, ast.TableLikeClause)
            }
        copied = sorted(s for s in sources if s in ctx.tenant_tables)
        if target and copied and not (target in ctx.rls_enabled and ctx.policies.get(target)):
            yield finding(RULE, st, target, f"copies {', '.join(copied)} without RLS on the copy")
