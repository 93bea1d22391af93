"""TGL103 write-policy-unpinned: a write policy without a tenant-pinned WITH CHECK."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.lint.engine import (
    LintContext,
    finding,
    has_restrictive_guard,
    pinned,
    rel_name,
)
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit

RULE = Rule(
    code="TGL103",
    name="write-policy-unpinned",
    severity=as_audit("TGA121"),  # one severity per defect
    tool="lint",
    summary="A permissive INSERT/UPDATE/ALL policy does not pin written rows to the tenant",
    description="WITH CHECK validates the rows a statement writes. Counted as pinned: a WITH "
    "CHECK that mentions the tenant column, or (ALL/UPDATE only) no WITH CHECK and a USING that "
    "does, since PostgreSQL then reuses USING. A restrictive tenant guard in the same files "
    "also pins writes. A FOR INSERT policy with no WITH CHECK at all admits no row (PostgreSQL "
    "ORs only the checks that exist): low, as the audit rates it (TGA121).",
    anti_pattern="CREATE POLICY ins ON app.t FOR INSERT WITH CHECK (true);",
    best_practice="CREATE POLICY ins ON app.t FOR INSERT\n"
    "  WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint));",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for st in ctx.statements:
        p = st.node
        if not isinstance(p, ast.CreatePolicyStmt) or not p.permissive:
            continue
        cmd = (p.cmd_name or "all").lower()
        if cmd not in ("all", "insert", "update"):
            continue
        table = rel_name(p.table)
        if cmd == "insert" and p.with_check is None:
            yield finding(
                RULE,
                st,
                f"policy {p.policy_name} on {table}",
                "FOR INSERT without WITH CHECK: PostgreSQL adds no check for it to the ones it "
                "ORs, so it admits no row (another tenant's neither); rated low, since it leaks "
                f"nothing but reads as if it allowed any insert: drop it or pin "
                f"{ctx.key_of(table)} in a WITH CHECK",
                severity=Severity.LOW,
            )
            continue
        effective = (
            p.with_check if p.with_check is not None else (p.qual if cmd != "insert" else None)
        )
        if not pinned(ctx, effective, table) and not has_restrictive_guard(ctx, table):
            yield finding(
                RULE,
                st,
                f"policy {p.policy_name} on {table}",
                f"FOR {cmd.upper()} does not pin {ctx.key_of(table)} in WITH CHECK",
            )
