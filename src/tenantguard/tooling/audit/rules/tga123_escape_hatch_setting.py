"""TGA123 escape-hatch-setting: a policy trusts a setting the app connection can change."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext, sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import settings_read

RULE = Rule(
    code="TGA123",
    name="escape-hatch-setting",
    severity=Severity.HIGH,
    tool="audit",
    summary="A policy reads a setting other than the tenant/user setting (an escape hatch)",
    description="Any role can SET any custom setting. A policy such as "
    "USING (... OR current_setting('app.is_admin', true) = 'on') lets SQL on the app "
    "connection switch isolation off.",
    anti_pattern="USING (tenant_id = ... OR current_setting('app.bypass', true) = 'on')",
    best_practice="Use a separate, audited admin role for cross-tenant work.",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    allowed = {ctx.setting, ctx.user_setting}
    for t in ctx.tables:
        for p in t.policies:
            extra = (settings_read(p.qual) | settings_read(p.with_check)) - allowed
            if extra:
                yield Finding(
                    RULE,
                    f"{p.label} on {t.label}",
                    f"reads {', '.join(sorted(extra))}, which any session can set",
                    fix_sql=sql_comment(
                        "remove the "
                        + ", ".join(sql.Literal(x).as_string(ctx.conn) for x in sorted(extra))
                        + " branch from "
                        + sql.SQL("POLICY {} ON {}")
                        .format(sql.Identifier(p.name), t.name.ident)
                        .as_string(ctx.conn)
                    ),
                )
