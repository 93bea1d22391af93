"""``tenantguard probe``: attack a live database as one tenant against another.

For every tenant table the runtime role can touch, tenant A (an existing tenant, or a
synthetic one) tries to read, insert, move, change and delete tenant B's rows, to
reference them by foreign key, to learn their unique values, to reach them through
partitions, views, SECURITY DEFINER functions and cached plans, and to see anything at
all with no, an empty, or a hostile tenant id. Each attack that gets through is a
finding with the SQL that proved it. Each attack that could not be made is a finding
too (TGP190, TGP191): an untested table is never reported as a clean one.

Everything runs as the runtime role (``SET LOCAL ROLE``) in savepoints inside one
transaction per table that is always rolled back, on two connections the probe opens
and closes itself (the caller's connection only reads the catalog). Synthetic rows use
explicit values for identity and serial columns, so no sequence moves either. The
administrator should be a superuser (or BYPASSRLS) to read both tenants' rows and
insert synthetic ones, and must be allowed to ``SET ROLE`` to the runtime role.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.admin.connect import admin_connect, describe_dsn
from tenantguard.admin.install import signing_installed
from tenantguard.core.names import QualifiedName
from tenantguard.core.signed_sql import insert_key_statement, keys_schema_for
from tenantguard.core.signing import (
    SigningKey,
    key_blocks,
    key_from_env,
    new_key,
    parse_signing_key,
)
from tenantguard.errors import UsageError, first_line
from tenantguard.tooling._escalation import foreign_code
from tenantguard.tooling._runas import RuntimeAccess, resolve_access
from tenantguard.tooling._scope import (
    check_role,
    check_schemas,
    check_setting,
    check_targets,
    resolve_app_role,
    tenant_columns_meta,
)
from tenantguard.tooling.catalog import (
    ExposingView,
    Table,
    TableMeta,
    load_context,
    load_exposing_views,
    load_meta,
    role_defaults,
    settings_in_use,
)
from tenantguard.tooling.findings import Finding, Report, Rule, Severity
from tenantguard.tooling.probe._session import Prober, execute
from tenantguard.tooling.probe._target import CannotBuildRow, prepare_target
from tenantguard.tooling.probe._views import prepare_view
from tenantguard.tooling.probe.attacks import REGISTRY as ATTACKS
from tenantguard.tooling.probe.attacks import RULES as ATTACK_RULES

__all__ = ["RULES", "probe_database"]

NOT_RUN = Rule(
    "TGP190",
    "attack-not-run",
    Severity.MEDIUM,
    "probe",
    "An attack could not be made on this table, so it proves nothing either way",
    "The probe could not build a valid row, an unrelated constraint or privilege refused "
    "the statement, or the attack was skipped on purpose (a VOLATILE function, a very large "
    "table). The message says which and why; the attack was not counted as safe.",
)
NOT_PROBED = Rule(
    "TGP191",
    "table-not-probed",
    Severity.HIGH,
    "probe",
    "A tenant table the runtime role can touch was not probed at all",
    "No two tenants could be found or made for it (no rows and no way to insert synthetic "
    "ones, e.g. an admin without BYPASSRLS), or reading it failed. Nothing is known about "
    "this table's isolation, and the run does not exit 0 whatever --fail-on says.",
    coverage=True,
)
SEQUENCE_MOVED = Rule(
    "TGP192",
    "sequence-advanced",
    Severity.LOW,
    "probe",
    "A sequence advanced during the probe (sequences are not rolled back)",
    "A trigger or a column default called nextval() during an attack. The gap this leaves "
    "is harmless; the probe does not reset the sequence.",
)
UNREACHABLE = Rule(
    "TGP193",
    "table-unreachable",
    Severity.LOW,
    "probe",
    "A tenant table the runtime role cannot reach was not probed",
    "The runtime role has no privilege on the table (or no USAGE on its schema), so no attack "
    "can be made on it as that role: nothing leaks through it directly, and nothing was "
    "proven either. It is neither a leak nor counted clean: the report lists it in "
    "meta.tables_unreachable and says which privilege is missing. Views and SECURITY DEFINER "
    "functions over it are attacked where the role can reach them.",
)
RULES: list[Rule] = [*ATTACK_RULES, NOT_RUN, NOT_PROBED, SEQUENCE_MOVED, UNREACHABLE]

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
    tenant_columns: Mapping[str, str] | None = None,
    setting: str | None = None,
    schemas: list[str] | None = None,
    tables: list[str] | None = None,
    statement_timeout_ms: int = 10_000,
    call_volatile: bool = False,
    progress: Callable[[str], None] | None = None,
    signing_key: SigningKey | str | None = None,
) -> Report:
    """Run every attack on every tenant table; *conn* is an autocommit admin connection.

    The probe opens two more connections like *conn* (same DSN and password) for its
    work. *progress*, if given, is called with each table's name before it is probed.

    On a database with ``install --signed`` the probe binds signed contexts: with
    *signing_key* (or ``TENANTGUARD_SIGNING_KEY``), else with a key of its own that it
    inserts in each table's rolled-back transaction (the admin who ran ``install`` may).
    If it cannot bind a signed context at all, no table counts as probed.
    """
    if not conn.autocommit:
        raise UsageError(
            "the probe needs an autocommit connection", hint="connect with autocommit=True"
        )
    app_role = resolve_app_role(app_role, app_dsn, "probe")
    started = time.monotonic()
    check_role(conn, app_role)
    access = _check_can_become(conn, app_role)
    check_schemas(conn, schemas, "probe")
    ctx = load_context(
        conn,
        runtime_role=app_role,
        tenant_column=tenant_column,
        setting=setting,
        schemas=schemas,
        tables=tables,
        tenant_columns={QualifiedName.parse(k): v for k, v in (tenant_columns or {}).items()},
    )
    check_targets(conn, {t.name for t in ctx.tables}, tenant_column, schemas, tables, "probe")
    check_setting(setting, settings_in_use(conn, ctx), "probe")
    targets = [t for t in ctx.tables if t.privileges]
    unreachable = _unreachable_tables(ctx.tables, targets)
    views = _views_in_scope(conn, ctx.tables, app_role, tenant_column, schemas, tables)
    if unreachable and not targets and not views:
        raise UsageError(
            f"the runtime role {app_role!r} can reach none of the {len(unreachable)} tenant "
            f"table(s): {unreachable[0].unreachable(app_role)} ({unreachable[0].label}"
            + (f" and {len(unreachable) - 1} more)" if len(unreachable) > 1 else ")"),
            hint="check --app-role / --app-dsn (the role the application logs in as) and "
            "--schema; nothing was probed",
        )
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
    report = Report(tool="probe", target=describe_dsn(conn.info.dsn), rules=list(RULES))
    report.findings += [_unreachable(t, app_role) for t in unreachable]
    probe_key, table_setup = _signing(conn, signing_key)
    with _own_connection(conn) as work, _own_connection(conn) as fresh:
        prober = Prober(
            work,
            fresh,
            app_role=app_role,
            setting=ctx.setting,
            role_defaults=role_defaults(conn, app_role),
            statement_timeout_ms=statement_timeout_ms,
            replica_mode=superuser,
            call_volatile=call_volatile,
            user_setting=ctx.user_setting,
            access=access,
            signing_key=probe_key,
            table_setup=table_setup,
        )
        prober.scanned = list(ctx.tables)
        risky = {t.oid: foreign_code(work, t.oid, ctx.setting, ctx.user_setting) for t in targets}
        # reading a table as the admin evaluates its policies (for an admin RLS applies to):
        # tables with code the probe must not run are not read at all
        known = _known_tenants(work, [t for t in targets if not risky[t.oid]])
        why_not = _cannot_sign(prober, known) if probe_key is not None else None
        for t in targets if why_not is None else ():
            if progress:
                progress(t.label)
            report.findings += _probe_table(prober, t, metas, by_oid, bypass, known, risky[t.oid])
        # then the views the table pass did not read (TGP109): read on their own (TGP119)
        views = [v for v in views if f"view:{v.name}" not in prober.seen]
        for v in views if why_not is None else ():
            if progress:
                progress(f"view {v.name}")
            report.findings += _probe_view(prober, v, tenant_column, known)
        if why_not is not None:
            report.findings += [
                Finding(NOT_PROBED, label, f"not probed: {why_not}", severity=Severity.HIGH)
                for label in [*(t.label for t in targets), *(f"view {v.name}" for v in views)]
            ]
        # Every table refused for the same reason, the admin's own access: a usage error
        # (exit 2), not a report of untested tables. Other reasons stay TGP191 findings.
        labels = {t.label for t in targets}
        not_probed = [f for f in report.findings if f.rule is NOT_PROBED and f.object in labels]
        if (
            targets
            and len(not_probed) == len(targets)
            and all(_ADMIN_CANNOT in f.message for f in not_probed)
        ):
            raise UsageError(
                f"no table could be probed: {not_probed[0].message}"
                + (f" (and {len(not_probed) - 1} more table(s))" if len(not_probed) > 1 else ""),
                hint="the --dsn must be an administrator that can read every tenant's rows: a "
                "superuser or BYPASSRLS role, or the tables' owner where row level security is "
                "not forced; the runtime role's own login is --app-dsn",
            )
        if app_dsn:
            report.findings += _fresh_login(app_dsn, targets)
    moved = sorted(set(conn.execute(_SEQUENCES).fetchall()) - set(sequences_before))
    coverage = [f for f in report.findings if f.rule in (NOT_RUN, NOT_PROBED)]
    labels = {t.label for t in targets}
    tables_not_probed = [f for f in coverage if f.rule is NOT_PROBED and f.object in labels]
    report.meta = {
        "server_version_num": ctx.server_version_num,
        "runtime_role": app_role,
        "tenant_column": tenant_column,
        **tenant_columns_meta(ctx.tables, tenant_column),
        "setting": ctx.setting,
        "tables_probed": len(targets) - len(tables_not_probed),
        "tables_not_probed": len(tables_not_probed),
        "tables_unreachable": [t.label for t in unreachable],
        "views_read_on_their_own": [str(v.name) for v in views],
        "attacks_not_run": sum(1 for f in coverage if f.rule is NOT_RUN),
        "attempts": prober.attempts,
        "sequences_moved": [name for name, _ in moved],  # by triggers; reported, not reset
        "duration_s": round(time.monotonic() - started, 3),
    }
    for name in report.meta["sequences_moved"]:
        report.findings.append(
            Finding(
                SEQUENCE_MOVED,
                f"sequence {name}",
                "advanced during the probe (a trigger or default called nextval(); sequences "
                "are not rolled back): the gap is harmless, the value is not reset",
            )
        )
    return report


def _unreachable_tables(tables: list[Table], targets: list[Table]) -> list[Table]:
    """The tables the runtime role cannot touch, but for partitions and inheritance
    children of a table it can (their rows are attacked through that parent)."""
    covered = {t.label for t in targets}
    rest = [t for t in tables if not t.privileges]
    while True:
        through = [t for t in rest if covered & set(t.parents)]
        if not through:
            return rest
        covered |= {t.label for t in through}
        rest = [t for t in rest if t not in through]


def _unreachable(t: Table, role: str) -> Finding:
    """A table the runtime role cannot touch: not a leak, not clean; what it lacks."""
    via = f" (nor its parent {', '.join(t.parents)})" if t.parents else ""
    return Finding(
        UNREACHABLE,
        t.label,
        f"not probed: {t.unreachable(role)}; no attack can be made on it as this role, so "
        f"nothing leaks through it directly{via} and nothing was proven either",
    )


@contextlib.contextmanager
def _own_connection(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A new autocommit connection with *conn*'s parameters (and password), closed after:
    session-level leftovers (a lock a trigger took, a setting placeholder) end with it."""
    params = conn.info.get_parameters()
    if conn.info.password:
        params["password"] = conn.info.password
    own = admin_connect(psycopg.conninfo.make_conninfo(**params), autocommit=True)
    own.prepare_threshold = None  # our statements are one-offs: never server-prepared
    try:
        yield own
    finally:
        own.close()


def _probe_table(
    prober: Prober,
    t: Table,
    metas: dict[int, TableMeta],
    by_oid: dict[int, Table],
    bypass: bool,
    known: list[str],
    risky: list[tuple[str, str, str]],
) -> list[Finding]:
    found: list[Finding] = []
    # Protecting is the fix only for a table that is not protected; otherwise the probe's
    # own access is what failed, and the message says which privilege it needs.
    fix = None if (t.rls and t.forced) else t.protect_sql(metas[t.oid].primary_key)
    if risky:
        return [_refused(t.label, risky)]
    try:
        with prober.conn.transaction(force_rollback=True):
            prober.begin_table()
            tp = prepare_target(
                prober,
                t,
                metas[t.oid],
                metas,
                by_oid,
                can_synthesize=bypass,
                replica_mode=prober.replica_mode,
                known_tenants=known,
            )
            for attack in ATTACKS.checks(on=""):
                found.extend(attack.check(tp))
        for what, why, severity in tp.notes:
            found.append(Finding(NOT_RUN, t.label, f"{what}: {why}", severity=severity))
    except CannotBuildRow as exc:
        found.append(
            Finding(
                NOT_PROBED,
                t.label,
                f"not probed: {exc}{_admin_subject_to_rls(prober.conn, t)}",
                fix_sql=fix,
            )
        )
    except psycopg.Error as exc:
        first = first_line(exc) + _admin_subject_to_rls(prober.conn, t)
        found.append(Finding(NOT_PROBED, t.label, f"not probed: {first}", fix_sql=fix))
    return found


def _refused(label: str, risky: list[tuple[str, str, str]]) -> Finding:
    """*label* is not probed: code its owner wrote would run in the probe's session."""
    fn, owner, where = risky[0]
    more = f" (and {len(risky) - 1} more)" if len(risky) > 1 else ""
    return Finding(
        NOT_PROBED,
        label,
        f"not probed: {fn}, owned by {owner!r} and run by {where}{more}, would run "
        "inside the probe's session, where it could RESET ROLE to the administrator "
        "and act with privileges its owner does not have (a rollback does not undo "
        f"what it does outside the database): probe with a DSN that logs in as {owner!r} "
        "itself (the owner can act as the runtime role through a rolled-back grant), "
        "or, after reviewing it, make a superuser its owner",
    )


def _views_in_scope(
    conn: psycopg.Connection[Any],
    scanned: list[Table],
    role: str,
    tenant_column: str,
    schemas: list[str] | None,
    tables: list[str] | None,
) -> list[ExposingView]:
    """The views to read on their own: every one without --schema or --table; with them,
    those in a scanned schema or over a scanned table."""
    views = load_exposing_views(
        conn,
        role=role,
        tenant_column=tenant_column,
        tenant_columns={t.oid: t.tenant_column for t in scanned},
    )
    oids = {t.oid for t in scanned}
    return [
        v
        for v in views
        if not (schemas or tables)
        or any(b.oid in oids for b in v.bases)
        or (not tables and v.name.schema in (schemas or []))
    ]


def _probe_view(
    prober: Prober, view: ExposingView, tenant_column: str, known: list[str]
) -> list[Finding]:
    """The attacks registered on="view", in one rolled-back transaction."""
    label = f"{'materialized view' if view.kind == 'm' else 'view'} {view.name}"
    risky = foreign_code(
        prober.conn, view.oid, prober.setting, prober.user_setting, reads=view.reads
    )
    if risky:
        return [_refused(label, risky)]
    prober.forced_table, prober.user_value = None, None
    prober.replay, prober.replay_tenants = [], []
    found: list[Finding] = []
    try:
        with prober.conn.transaction(force_rollback=True):
            prober.begin_table()
            tp = prepare_view(prober, view, tenant_column, known)
            for attack in ATTACKS.checks(on="view"):
                found.extend(attack.check(tp))
        for what, why, severity in tp.notes:
            found.append(Finding(NOT_RUN, what, why, severity=severity))
    except (CannotBuildRow, psycopg.Error) as exc:
        why = str(exc) if isinstance(exc, CannotBuildRow) else first_line(exc)
        found.append(Finding(NOT_PROBED, label, f"not probed: {why}"))
    return found


def _signing(
    conn: psycopg.Connection[Any], signing_key: SigningKey | str | None
) -> tuple[SigningKey | None, list[tuple[Any, list[Any]]]]:
    """How the probe signs contexts on a signed database: (key, per-table setup)."""
    if not signing_installed(conn):
        return None, []
    key = parse_signing_key(signing_key) if signing_key is not None else key_from_env()
    setup: list[tuple[Any, list[Any]]] = []
    if key is None:  # a key of the probe's own, never committed
        key = new_key()
        ipad, opad = key_blocks(key)
        setup.append(
            (insert_key_statement(keys_schema_for("tenantguard")), [key.key_id, ipad, opad])
        )
    return key, setup


def _cannot_sign(prober: Prober, known: list[str]) -> str | None:
    """None when a signed context binds (the helper answers its tenant), else why not."""
    tenant = known[0] if known else "1"
    try:
        with prober.conn.transaction(force_rollback=True):
            prober.begin_table()
            prober.enter(tenant)
            row = prober.conn.execute("SELECT tenantguard.current_tenant()").fetchone()
    except psycopg.Error as exc:
        return (
            f"signed contexts are installed and the probe cannot bind one ({first_line(exc)}); "
            "pass --signing-key (or TENANTGUARD_SIGNING_KEY), or probe as the admin who ran "
            "install --signed"
        )
    if row is None or row[0] != tenant:
        return f"a signed context for tenant {tenant!r} read back as {row!r}"
    return None


def _admin_subject_to_rls(conn: psycopg.Connection[Any], t: Table) -> str:
    """Why the admin could not read the table's rows, when row level security is the cause."""
    try:
        row = conn.execute("SELECT pg_catalog.row_security_active(%s::oid)", (t.oid,)).fetchone()
    except psycopg.Error:
        return ""
    if not (row and row[0]):
        return ""
    return f" ({_ADMIN_CANNOT}: probe with a superuser or BYPASSRLS admin DSN, or as its owner)"


_ADMIN_CANNOT = "row level security applies to the administrator on this table"


def _check_can_become(conn: psycopg.Connection[Any], role: str) -> RuntimeAccess:
    """Every attack runs after SET ROLE: if the admin cannot act as *role* (directly or
    through a membership it grants itself inside each rolled-back transaction), nothing
    would be tested. Say which grant is missing."""
    row = conn.execute("SELECT current_user::text").fetchone()
    if row and row[0] == role:
        raise UsageError(
            f"--dsn logs in as the runtime role {role!r} itself: the probe needs an "
            "administrator to read both tenants' rows",
            hint="pass an administrator DSN as --dsn (a superuser, a BYPASSRLS role, or the "
            "tables' owner) and the application's DSN as --app-dsn",
        )
    access = resolve_access(conn, role, None, prefer_app=False)
    if not access.available:
        raise UsageError(
            f"the administrator cannot act as the runtime role {role!r}: {access.problem}",
            hint=f"run {access.fix} as a role that can, or use a superuser DSN; check the "
            "role name",
        )
    return access


def _known_tenants(conn: psycopg.Connection[Any], tables: list[Table]) -> list[str]:
    """Up to three tenant ids that have rows somewhere (to give synthetic rows real tenants)."""
    seen: list[str] = []
    for t in tables:
        query = sql.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE {c} IS NOT NULL LIMIT 3")
        try:
            with conn.transaction(force_rollback=True):
                rows = execute(
                    conn, query.format(c=sql.Identifier(t.tenant_column), t=t.name.ident)
                ).fetchall()
        except psycopg.Error:
            continue  # unreadable for this admin: the table's own probe will say so
        for (value,) in rows:
            if value not in seen:
                seen.append(value)
        if len(seen) >= 3:
            break
    return seen[:3]


def _fresh_login(app_dsn: str, targets: list[Table]) -> list[Finding]:
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
