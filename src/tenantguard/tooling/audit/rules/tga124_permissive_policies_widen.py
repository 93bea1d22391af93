"""TGA124 permissive-policies-widen: a permissive policy that is not pinned to the tenant
widens the others (permissive policies are ORed) and no restrictive tenant guard ANDs them."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext, Policy, Table, sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import mentions_column

RULE = Rule(
    code="TGA124",
    name="permissive-policies-widen",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="A permissive policy is not pinned to the tenant and widens the others",
    description="PostgreSQL ORs the permissive policies that apply to a command. A tenant-pinned "
    "policy plus a second one that mentions the tenant column without pinning it (an OR branch "
    "such as `OR is_public`, `tenant_id IS NOT NULL`, `tenant_id = other_column`, a constant "
    "list) lets every row the second one accepts through, for every tenant. Only a RESTRICTIVE "
    "tenant guard, ANDed with all of them, keeps the union inside the tenant. Policies granted "
    "to a group role the runtime role belongs to count too. (Policies that do not mention the "
    "tenant column at all are TGA122 / TGA121.)",
    anti_pattern="CREATE POLICY tenant_access ON app.docs\n"
    "  USING (tenant_id = (SELECT current_setting('app.tenant_id')::bigint));\n"
    "CREATE POLICY shared ON app.docs FOR SELECT\n"
    "  USING (tenant_id = (SELECT current_setting('app.tenant_id')::bigint) OR is_public);",
    best_practice="CREATE POLICY tg_tenant_guard ON app.docs AS RESTRICTIVE FOR ALL TO PUBLIC\n"
    "  USING (tenant_id = (SELECT tenantguard.current_tenant()::bigint))\n"
    "  WITH CHECK (tenant_id = (SELECT tenantguard.current_tenant()::bigint));",
)

_READS = ("SELECT", "UPDATE", "DELETE")  # commands whose visible rows USING decides
_WRITES = ("INSERT", "UPDATE")  # commands whose new rows WITH CHECK decides


def _legacy_rules_report(ctx: AuditContext, t: Table, p: Policy, part: str) -> bool:
    """Would TGA122 (USING) or TGA121 (WITH CHECK) already report this policy?"""
    if t.restrictive_guard is not None:
        return False
    if part == "USING":
        direct = "public" in p.roles or ctx.runtime_role in p.roles
        return direct and p.qual is not None and not mentions_column(p.qual, t.tenant_column)
    return p.command in ("ALL", "INSERT", "UPDATE") and not mentions_column(
        p.effective_check, t.tenant_column
    )


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    for t in ctx.tables:
        if not t.rls:
            continue
        applicable = [p for p in t.policies if ctx.applies(p)]
        for part, commands in (("USING", _READS), ("WITH CHECK", _WRITES)):

            def expr(p: Policy, part: str = part) -> str | None:
                return p.qual if part == "USING" else p.effective_check

            for p in applicable:
                cmds = [c for c in commands if p.covers(c)]
                if not p.permissive or not cmds or expr(p) is None:
                    continue
                if ctx.pinned(expr(p), t.tenant_column):
                    continue
                unguarded = [
                    c
                    for c in cmds
                    if not any(
                        not r.permissive and r.covers(c) and ctx.pinned(expr(r), t.tenant_column)
                        for r in applicable
                    )
                ]
                if not unguarded or _legacy_rules_report(ctx, t, p, part):
                    continue
                partners = sorted(
                    q.name
                    for q in applicable
                    if q is not p
                    and q.permissive
                    and any(q.covers(c) for c in unguarded)
                    and ctx.pinned(expr(q), t.tenant_column)
                )
                widened = (
                    f"ORed with {', '.join(partners)}, it widens "
                    f"{'them' if len(partners) > 1 else 'it'} to other tenants' rows"
                    if partners
                    else "rows it accepts are not limited to the bound tenant"
                )
                yield Finding(
                    RULE,
                    f"{p.label} on {t.label}",
                    f"permissive {part} ({expr(p)}) for {', '.join(unguarded)} does not pin "
                    f"{t.tenant_column} to the bound tenant and no restrictive tenant guard "
                    f"applies; {widened}"
                    + (
                        ""
                        if part == "USING"
                        else " (rated high, not critical: it admits writes of other tenants' "
                        "rows, it does not show them)"
                    ),
                    severity=None if part == "USING" else Severity.HIGH,
                    fix_sql=t.protect_sql()
                    + "\n"
                    + sql_comment(
                        "or rewrite "
                        + sql.Identifier(p.name).as_string(ctx.conn)
                        + " so that every OR branch pins "
                        + sql.Identifier(t.tenant_column).as_string(ctx.conn)
                    ),
                )
