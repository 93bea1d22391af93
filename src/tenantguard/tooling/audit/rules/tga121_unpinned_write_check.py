"""TGA121 unpinned-write-check: writes are not checked against the tenant."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import mentions_column

RULE = Rule(
    code="TGA121",
    name="unpinned-write-check",
    severity=Severity.HIGH,
    tool="audit",
    summary="A write policy does not pin new rows to the tenant (missing or loose WITH CHECK)",
    description="USING filters the rows a statement can see; WITH CHECK validates the rows it "
    "writes. A permissive INSERT/UPDATE/ALL policy whose check does not mention the tenant "
    "column lets a tenant insert rows into, or move rows to, another tenant (PostgreSQL reuses "
    "USING as the check for ALL/UPDATE only when WITH CHECK is absent). A FOR INSERT policy "
    "with no WITH CHECK at all admits no row: PostgreSQL ORs only the checks that exist, so "
    "beside a pinned policy it lets no other tenant's row in, and alone it refuses every "
    "insert. That is rated low (misleading, not exposed), as the server behaves.",
    anti_pattern="CREATE POLICY ins ON app.t FOR INSERT WITH CHECK (true);",
    best_practice="... WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint))",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        if not t.rls or t.restrictive_guard is not None:
            continue  # a restrictive tenant guard for ALL pins every write
        for p in t.policies:
            if not p.permissive or p.command not in ("ALL", "INSERT", "UPDATE"):
                continue
            effective = (
                p.with_check
                if p.with_check is not None
                else (p.qual if p.command in ("ALL", "UPDATE") else None)
            )
            if p.command == "INSERT" and p.with_check is None:
                yield Finding(
                    RULE,
                    f"{p.label} on {t.label}",
                    "FOR INSERT without WITH CHECK: PostgreSQL adds no check for it to the ones "
                    "it ORs, so it admits no row (another tenant's neither); rated low, since "
                    "it leaks nothing but reads as if it allowed any insert: drop it or give it "
                    f"a WITH CHECK that pins {t.tenant_column}",
                    severity=Severity.LOW,
                    fix_sql=sql.SQL("DROP POLICY {} ON {};")
                    .format(sql.Identifier(p.name), t.name.ident)
                    .as_string(ctx.conn),
                )
            elif not mentions_column(effective, t.tenant_column):
                yield Finding(
                    RULE,
                    f"{p.label} on {t.label}",
                    f"FOR {p.command} check is {effective or 'absent'!s}; it does not pin "
                    f"{t.tenant_column}",
                    fix_sql=t.protect_sql(),
                )
