"""TGA112 tenant-setting-default: a persistent default gives every session a tenant."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg

from tenantguard.core.rolecheck import role_report, setting_ident
from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA112",
    name="tenant-setting-default",
    severity=Severity.HIGH,
    tool="audit",
    summary="The tenant setting has a persistent default (role, database or server level)",
    description="Custom settings do not appear in pg_settings, so this hides well: a default "
    "set with ALTER ROLE/DATABASE ... SET or in postgresql.conf makes every unbound session "
    "act as that tenant instead of failing closed.",
    anti_pattern="ALTER ROLE app_user SET app.tenant_id = '1';",
    best_practice="ALTER ROLE app_user RESET app.tenant_id;  -- bind per transaction only",
)


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    row = ctx.role_row
    found = False
    if row is not None:
        report = role_report(row)
        for kind, problem, fix in zip(report.kinds, report.problems, report.fixes, strict=True):
            if kind == "setting_default":
                found = True
                yield Finding(RULE, f"role {report.role}", problem, fix_sql=fix)
    if (
        ctx.app_dsn and not found
    ):  # a fresh session as the runtime role shows server-level defaults too
        with psycopg.connect(ctx.app_dsn, autocommit=True, connect_timeout=10) as app:
            got = app.execute("SELECT current_setting(%s, true)", (ctx.setting,)).fetchone()
        value = got[0] if got else None
        if value not in (None, ""):
            yield Finding(
                RULE,
                f"setting {ctx.setting}",
                f"a fresh session of the runtime role starts with {ctx.setting} = {value!r}",
                fix_sql=f"ALTER SYSTEM RESET {setting_ident(ctx.setting)};  "
                "-- and check ALTER ROLE/DATABASE ... SET",
            )
