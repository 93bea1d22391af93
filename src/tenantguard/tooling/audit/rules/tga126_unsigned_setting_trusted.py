"""TGA126 unsigned-setting-trusted: signing is installed, but a policy believes the plain setting."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.audit.rules._signing import HELPER_SCHEMA, signing_of
from tenantguard.tooling.catalog import AuditContext, sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import func_names, settings_read

RULE = Rule(
    code="TGA126",
    name="unsigned-setting-trusted",
    severity=Severity.CRITICAL,
    tool="audit",
    summary="Signed contexts are installed, but a policy trusts the unsigned setting",
    description="With install --signed the tenant setting holds a signed token, and only "
    "the verifying view (tenantguard_keys.signed_context) or tenantguard's helpers say "
    "which tenant it is. A policy that reads current_setting('app.tenant_id') itself, or "
    "calls a function of its own that does, or a tenantguard.current_tenant() put back by "
    "hand as a plain reader, lets any SQL on the app connection name another tenant.",
    anti_pattern="USING (tenant_id = current_setting('app.tenant_id')::bigint)",
    best_practice="tenantguard protect TABLE  -- policies read the verifying view",
)

_OWN_READERS = ("current_tenant", "current_user_id")


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    signing = signing_of(ctx)
    if signing is None:
        return
    settings = {ctx.setting, ctx.user_setting}
    # User functions that read a setting themselves (tenantguard's readers excepted).
    readers: dict[tuple[str, str], set[str]] = {}
    for fn in ctx.functions:
        body = fn.source or ""
        hits = {s for s in settings if f"'{s}'" in body}
        if not hits:
            continue
        if fn.schema == signing.keys_schema:
            continue  # the view's error path, which only raises
        if fn.schema == HELPER_SCHEMA and fn.name in _OWN_READERS:
            if "signed_context" not in body:
                yield Finding(
                    RULE,
                    f"function {fn.signature}",
                    "tenantguard's helper reads the setting without verifying it",
                    fix_sql="-- tenantguard install ... --signed  (puts back the verifying helper)",
                )
            continue
        if fn.schema == HELPER_SCHEMA:
            continue  # tenant_setting() / user_setting(): constants naming the setting
        readers[(fn.schema, fn.name)] = hits
    for t in ctx.tables:
        for p in t.policies:
            direct = (settings_read(p.qual) | settings_read(p.with_check)) & settings
            via = {
                f"{schema}.{name}"
                for expr in (p.qual, p.with_check)
                for schema, name in func_names(expr)
                for (fs, fname) in readers
                if fname == name and schema in (None, fs)
            }
            if not direct and not via:
                continue
            what = ", ".join(sorted(direct)) or "the setting"
            how = f"reads {what}" + (f" through {', '.join(sorted(via))}" if via else "")
            yield Finding(
                RULE,
                f"{p.label} on {t.label}",
                f"{how} without verifying its signature: any session can set it",
                fix_sql=sql_comment(
                    "tenantguard protect "
                    + t.label
                    + "  (or rewrite "
                    + sql.SQL("POLICY {} ON {}")
                    .format(sql.Identifier(p.name), t.name.ident)
                    .as_string(ctx.conn)
                    + " to compare with tenantguard.current_tenant())"
                ),
            )
