"""``tenantguard probe``: attack a live database as one tenant against another.

For every tenant table the runtime role can touch, tenant A (an existing tenant, or a
synthetic one) tries to read, insert, move, change and delete tenant B's rows, to
reference them by foreign key, to learn their unique values, to reach them through
partitions, views, SECURITY DEFINER functions and cached plans, and to see anything at
all with no, an empty, or a hostile tenant id. Each attack that gets through is a
finding with the SQL that proved it.

Everything runs as the runtime role (``SET LOCAL ROLE``) in savepoints inside one
transaction per table that is always rolled back; synthetic rows use explicit values
for identity and serial columns, so no sequence moves either. The administrator DSN
should be a superuser (or BYPASSRLS) to read both tenants' rows and insert synthetic
ones, and must be allowed to ``SET ROLE`` to the runtime role.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.admin.connect import admin_connect, describe_dsn
from tenantguard.errors import UsageError
from tenantguard.tooling.audit.catalog import Table, load_context
from tenantguard.tooling.findings import Report
from tenantguard.tooling.probe._catalog import load_meta, role_defaults
from tenantguard.tooling.probe._session import Prober
from tenantguard.tooling.probe._target import CannotBuildRow, prepare_target
from tenantguard.tooling.probe.attacks import RULES, all_attacks

__all__ = ["RULES", "probe_database"]

_SEQUENCES = """
SELECT schemaname::text || '.' || sequencename::text, last_value
FROM pg_catalog.pg_sequences ORDER BY 1
"""


def probe_database(
    conn: psycopg.Connection[Any],
    *,
    app_role: str | None = None,
    app_dsn: str | None = None,
    tenant_column: str = "tenant_id",
    setting: str | None = None,
    schemas: list[str] | None = None,
    tables: list[str] | None = None,
    statement_timeout_ms: int = 10_000,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run every attack on every tenant table; *conn* is an autocommit admin connection.

    *progress*, if given, is called with each table's name before it is probed.
    """
    if app_role is None and app_dsn is None:
        raise UsageError(
            "the probe needs the runtime role", hint="pass --app-role ROLE or --app-dsn DSN"
        )
    if not conn.autocommit:
        raise UsageError(
            "the probe needs an autocommit connection", hint="connect with autocommit=True"
        )
    if app_role is None:
        assert app_dsn is not None
        with admin_connect(app_dsn, autocommit=True) as app:
            app_role = str(app.execute("SELECT current_user::text").fetchone()[0])  # type: ignore[index]
    started = time.monotonic()
    _check_can_become(conn, app_role)
    ctx = load_context(
        conn,
        runtime_role=app_role,
        tenant_column=tenant_column,
        setting=setting,
        schemas=schemas,
        tables=tables,
    )
    targets = [t for t in ctx.tables if t.privileges]
    by_oid = {t.oid: t for t in ctx.tables}
    metas = load_meta(
        conn,
        [t.oid for t in ctx.tables],
        {t.oid: t.name for t in ctx.tables},
        role=app_role,
        tenant_column=tenant_column,
    )
    row = conn.execute(
        "SELECT rolsuper, rolsuper OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user"
    ).fetchone()
    superuser, bypass = (bool(row[0]), bool(row[1])) if row else (False, False)
    sequences_before = conn.execute(_SEQUENCES).fetchall()
    known = _known_tenants(conn, ctx.tables)
    prober = Prober(
        conn,
        app_role=app_role,
        setting=ctx.setting,
        role_defaults=role_defaults(conn, app_role),
        statement_timeout_ms=statement_timeout_ms,
    )
    report = Report(tool="probe", target=describe_dsn(conn.info.dsn), rules=list(RULES))
    inconclusive: list[str] = []
    saved_threshold = conn.prepare_threshold
    conn.prepare_threshold = None  # our own statements must not be server-prepared
    try:
        for t in targets:
            if progress:
                progress(t.label)
            inconclusive += _probe_table(prober, t, metas, by_oid, report, bypass, superuser, known)
        if app_dsn:
            report.findings += _fresh_login(app_dsn, targets)
    finally:
        conn.prepare_threshold = saved_threshold
    moved = sorted(set(conn.execute(_SEQUENCES).fetchall()) - set(sequences_before))
    report.meta = {
        "server_version_num": ctx.server_version_num,
        "runtime_role": app_role,
        "tenant_column": tenant_column,
        "setting": ctx.setting,
        "tables_probed": len(targets),
        "attempts": prober.attempts,
        "inconclusive": inconclusive,
        "sequences_moved": [name for name, _ in moved],  # by triggers; reported, not reset
        "duration_s": round(time.monotonic() - started, 3),
    }
    return report


def _probe_table(
    prober: Prober,
    t: Table,
    metas: dict[int, Any],
    by_oid: dict[int, Table],
    report: Report,
    bypass: bool,
    superuser: bool,
    known: list[str],
) -> list[str]:
    try:
        with prober.conn.transaction(force_rollback=True):
            tp = prepare_target(
                prober,
                t,
                metas[t.oid],
                metas,
                by_oid,
                can_synthesize=bypass,
                replica_mode=superuser,
                known_tenants=known,
            )
            for _rule, attack in all_attacks():
                report.findings.extend(attack(tp))
            return tp.inconclusive
    except CannotBuildRow as exc:
        return [f"{t.label}: not probed: {exc}"]
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return [f"{t.label}: not probed: {first}"]


def _check_can_become(conn: psycopg.Connection[Any], role: str) -> None:
    """Every attack runs after SET ROLE: if that fails, nothing would be tested. Say so."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(
            f"the administrator cannot act as the runtime role {role!r}: {first}",
            hint=f"use a superuser DSN, or GRANT {sql.Identifier(role).as_string(conn)} TO the "
            "admin role; check the role name",
        ) from None


def _known_tenants(conn: psycopg.Connection[Any], tables: list[Table]) -> list[str]:
    """Up to three tenant ids that have rows somewhere (to give synthetic rows real tenants)."""
    seen: list[str] = []
    for t in tables:
        query = sql.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE {c} IS NOT NULL LIMIT 3")
        for (value,) in conn.execute(
            query.format(c=sql.Identifier(t.tenant_column), t=t.name.ident)
        ).fetchall():
            if value not in seen:
                seen.append(value)
        if len(seen) >= 3:
            break
    return seen[:3]


def _fresh_login(app_dsn: str, targets: list[Table]) -> list[Any]:
    """With --app-dsn: a real login, nothing bound (server-level defaults apply here)."""
    from tenantguard.tooling.probe.attacks.tgp113_no_tenant_context import RULE

    found = []
    with admin_connect(app_dsn, autocommit=True) as app:
        for t in targets:
            if "SELECT" not in t.privileges:
                continue
            query = sql.SQL("SELECT count(*) FROM {}").format(t.name.ident)
            try:
                with app.transaction(force_rollback=True):
                    n = int(app.execute(query).fetchone()[0])  # type: ignore[index]
            except psycopg.Error:
                continue  # fail-closed
            if n > 0:
                from tenantguard.tooling.findings import Finding

                found.append(
                    Finding(
                        RULE,
                        t.label,
                        f"{n} row(s) visible to a fresh login with no tenant bound",
                        fix_sql=t.protect_sql(),
                        evidence=f"-- as {describe_dsn(app_dsn)}\n"
                        f"BEGIN; {query.as_string(app)}; ROLLBACK;  -- {n}",
                    )
                )
    return found
