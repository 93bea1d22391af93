"""TGA171 pooler-mode: the PgBouncer in front of the database (``--pooler-dsn``) lets one
client's session state, or a privileged login, reach other clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast, enums

from tenantguard.core.rolecheck import ROLE_CHECK_QUERY, role_params, role_report
from tenantguard.tooling.audit.pooler import PoolerInfo
from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.sqlanalysis import statements_or_none

RULE = Rule(
    code="TGA171",
    name="pooler-mode",
    severity=Severity.HIGH,
    tool="audit",
    summary="The connection pooler hands one client's session state (or a privileged login) "
    "to others",
    description="Read from PgBouncer's admin console when --pooler-dsn is given. Statement "
    "pooling runs each statement on whichever server connection is free, so a tenant set on "
    "the session applies to other clients' statements and explicit transactions are refused. "
    "Session pooling with a server_reset_query that does not reset settings (empty, or neither "
    "DISCARD ALL nor RESET ALL) hands a session-level tenant setting (SET, set_config(..., "
    "false)) to the next client. A [databases] entry with user= logs every client in as that "
    "role: if it is superuser, BYPASSRLS or owns tenant tables, row level security is gone "
    "whatever role the application authenticates as. Transaction pooling with per-transaction "
    "binding (what tenantguard does) is the safe combination.",
    anti_pattern="; pgbouncer.ini\n"
    "[databases]\n"
    "app = host=10.0.0.5 dbname=app user=postgres\n"
    "[pgbouncer]\n"
    "pool_mode = session\n"
    "server_reset_query =",
    best_practice="; pgbouncer.ini\n"
    "[databases]\n"
    "app = host=10.0.0.5 dbname=app\n"
    "[pgbouncer]\n"
    "pool_mode = transaction\n"
    "server_reset_query = DISCARD ALL",
)


def _resets(query: str, setting: str) -> bool:
    """Does *query* (server_reset_query) clear a session-level *setting*?"""
    stmts = statements_or_none(query)
    if stmts is None:
        return False
    for s in stmts:
        if isinstance(s, ast.DiscardStmt) and s.target == enums.DiscardMode.DISCARD_ALL:
            return True
        if isinstance(s, ast.VariableSetStmt) and (
            s.kind == enums.VariableSetKind.VAR_RESET_ALL
            or (s.kind == enums.VariableSetKind.VAR_RESET and s.name == setting)
        ):
            return True
    return False


def _modes(info: PoolerInfo, dbname: str) -> list[tuple[str, str]]:
    """(where, pool_mode) for every way a client reaches *dbname* through the pooler."""
    entries = info.entries_for(dbname)
    if not entries:
        return [
            (f"pool_mode (database {dbname!r} is not listed; the fallback uses it)", info.pool_mode)
        ]
    out: list[tuple[str, str]] = []
    names = {str(e["name"]) for e in entries}
    for e in entries:
        out.append((f"[databases] {e['name']}", str(e.get("pool_mode") or info.pool_mode)))
    for p in info.pools:
        if str(p.get("database")) in names and p.get("pool_mode"):
            out.append((f"pool {p['database']}/{p['user']}", str(p["pool_mode"])))
    return list(dict.fromkeys(out))


def _force_user(ctx: AuditContext, entry: dict[str, Any]) -> Finding | None:
    user = entry.get("force_user")
    if not user:
        return None
    row = ctx.conn.execute(
        ROLE_CHECK_QUERY,
        role_params(str(user), ctx.tenant_column, ctx.setting, ctx.user_setting),
    ).fetchone()
    if row is None:
        return None
    report = role_report(row)
    problems = [
        p for k, p in zip(report.kinds, report.problems, strict=True) if k != "setting_default"
    ]
    if not problems:
        return None
    return Finding(
        RULE,
        f"pooler {ctx.pooler.target} [databases] {entry['name']}",
        f"every client of this entry logs in to the server as {user!r}: {'; '.join(problems)}",
        severity=Severity.CRITICAL,
        fix_sql=f"; pgbouncer.ini [databases]: drop user={user} from the {entry['name']} entry "
        "(clients then log in as the runtime role), then RELOAD;",
    )


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    info: PoolerInfo | None = ctx.pooler
    if info is None:
        return
    obj = f"pooler {info.target}"
    reset = info.config.get("server_reset_query", "")
    for where, mode in _modes(info, ctx.database):
        if mode == "statement":
            yield Finding(
                RULE,
                obj,
                f"{where} = statement: each statement may run on a different server "
                f"connection, so a session-level {ctx.setting} set by one client applies to "
                "other clients' statements (and transactions that bind it are refused)",
                fix_sql="; pgbouncer.ini: pool_mode = transaction  (per database: "
                "<name> = ... pool_mode=transaction), then RELOAD;",
            )
        elif mode == "session" and not _resets(reset, ctx.setting):
            shown = reset.strip() or "empty"
            yield Finding(
                RULE,
                obj,
                f"{where} = session with server_reset_query {shown!r}: a session-level "
                f"{ctx.setting} (SET / set_config(..., false)) stays on the server connection "
                "and the next client runs as that tenant",
                fix_sql="; pgbouncer.ini: server_reset_query = DISCARD ALL  (or pool_mode = "
                "transaction with per-transaction binding), then RELOAD;",
            )
    for entry in info.entries_for(ctx.database):
        found = _force_user(ctx, entry)
        if found is not None:
            yield found
