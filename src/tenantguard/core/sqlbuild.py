"""SQL builders for the database side: ``install`` and ``protect``.

Pure functions: they take specs (and, for idempotent planning, the observed state of
a table) and return :class:`psycopg.sql.Composed` statements. Every identifier goes
through :class:`~psycopg.sql.Identifier`, every value through
:class:`~psycopg.sql.Literal` (DDL cannot take bound parameters). The CLI, the
migration helpers and the audit all use these same builders.

Render a statement for a migration file with :func:`render`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from psycopg import sql

from tenantguard.core.names import QualifiedName, check_identifier, check_setting_name
from tenantguard.errors import UsageError

__all__ = [
    "ACCESS_POLICY",
    "GUARD_POLICY",
    "InstallSpec",
    "PolicyState",
    "ProtectSpec",
    "TableState",
    "cast_for_type",
    "helper_sources",
    "install_statements",
    "protect_statements",
    "render",
]

GUARD_POLICY = "tg_tenant_guard"
ACCESS_POLICY = "tg_tenant_access"
SCOPE_UPDATE_POLICY = "tg_scope_update"
SCOPE_DELETE_POLICY = "tg_scope_delete"
USER_POLICIES = {
    "write": (
        ("tg_user_insert", "INSERT"),
        ("tg_user_update", "UPDATE"),
        ("tg_user_delete", "DELETE"),
    ),
    "all": (("tg_user_all", "ALL"),),
}
FINGERPRINT_PREFIX = "tenantguard:"

# Column types tenantguard can compare with the text setting, and the cast it uses.
# Keys are pg_catalog.format_type() output.
_CASTS: dict[str, sql.SQL] = {
    "integer": sql.SQL("integer"),
    "bigint": sql.SQL("bigint"),
    "uuid": sql.SQL("uuid"),
    "text": sql.SQL("text"),
}


def cast_for_type(type_name: str) -> sql.SQL:
    """The cast applied to the text setting so it compares with a column of *type_name*."""
    key = type_name.lower().strip()
    if key.startswith("character varying") or key == "varchar":
        key = "text"
    try:
        return _CASTS[key]
    except KeyError:
        raise UsageError(
            f"tenant column type {type_name!r} is not supported",
            hint="use integer, bigint, uuid, text or varchar for the tenant column",
        ) from None


def render(statement: sql.Composable) -> str:
    """Plain SQL text, for dry runs and migration files."""
    return statement.as_string()


# --------------------------------------------------------------------------- install


@dataclass(frozen=True, slots=True)
class InstallSpec:
    """What ``tenantguard install`` creates."""

    app_role: str
    owner_role: str
    setting: str = "app.tenant_id"
    user_setting: str = "app.user_id"
    schema: str = "tenantguard"
    #: Keep ``TEMPORARY`` on the database for ``PUBLIC`` and the app role (see
    #: :func:`database_statements`); the pools then verify every checkin.
    allow_temp: bool = False
    #: Keep ``track_activities`` on for the app role (see :func:`activity_statement`).
    keep_activity: bool = False
    #: ``install --signed``: policies believe only a signed context (core.signed_sql).
    signed: bool = False
    #: The NOLOGIN role that owns the key table (default ``<owner_role>_keys``).
    key_owner_role: str | None = None

    @property
    def key_owner(self) -> str:
        return self.key_owner_role or f"{self.owner_role}_keys"

    def __post_init__(self) -> None:
        check_identifier(self.app_role, "role name")
        check_identifier(self.owner_role, "role name")
        check_identifier(self.schema, "schema name")
        if self.signed:
            check_identifier(self.key_owner, "role name")
            check_identifier(f"{self.schema}_keys", "schema name")
            if self.key_owner in (self.app_role, self.owner_role):
                raise UsageError(
                    "the key-owner role must differ from the app and owner roles",
                    hint="leave --key-owner-role unset to use <owner role>_keys",
                )
        check_setting_name(self.setting)
        check_setting_name(self.user_setting)
        if self.app_role == self.owner_role:
            raise UsageError(
                "the app role and the owner role must differ",
                hint="the owner role owns the tables; the app role only uses them",
            )


_FAIL_BODY = """
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'insufficient_privilege',
        MESSAGE = format('tenantguard: no %s is bound (setting %s is unset or empty)', what, setting),
        HINT = format('bind it per transaction: SELECT set_config(%L, <id>, true)', setting);
END
"""


def _fail_sql(schema: str) -> sql.Composed:
    # Only reached when the setting is missing: the error path, never the hot path.
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}(setting text, what text) RETURNS text "
        "LANGUAGE plpgsql STABLE PARALLEL SAFE AS {body}"
    ).format(fn=sql.Identifier(schema, "_fail"), body=sql.Literal(_FAIL_BODY))


def _helper_sql(schema: str, fname: str, setting: str, what: str) -> sql.Composed:
    """A fail-closed reader of *setting*: returns it, or raises when unset/NULL/empty.

    LANGUAGE sql with a single SELECT, so the planner inlines it into the policy (no
    function call on the hot path; plpgsql runs only to raise). STABLE, never
    IMMUTABLE: an IMMUTABLE function reading a setting can be folded into a cached
    generic plan and reused for the next tenant on the connection.
    """
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS {body}"
    ).format(
        fn=sql.Identifier(schema, fname), body=sql.Literal(_helper_body(schema, setting, what))
    )


def _helper_body(schema: str, setting: str, what: str) -> str:
    name = sql.Literal(check_setting_name(setting))
    body = sql.SQL(
        "SELECT CASE WHEN pg_catalog.current_setting({name}, true) <> '' "
        "THEN pg_catalog.current_setting({name}, true) "
        "ELSE {fail}({name}, {what}) END"
    ).format(name=name, fail=sql.Identifier(schema, "_fail"), what=sql.Literal(what))
    return render(body)


def _constant_sql(schema: str, fname: str, value: str) -> sql.Composed:
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}() RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE "
        "AS {body}"
    ).format(fn=sql.Identifier(schema, fname), body=sql.Literal(_constant_body(value)))


def _constant_body(value: str) -> str:
    return "SELECT " + sql.Literal(value).as_string()


def helper_sources(schema: str, setting: str, user_setting: str) -> dict[str, str]:
    """The body (``pg_proc.prosrc``) ``install`` gives each helper in *schema*, by name:
    a helper whose body differs was changed by someone (the probe trusts only these)."""
    return {
        "_fail": _FAIL_BODY,
        "current_tenant": _helper_body(schema, setting, "tenant"),
        "current_user_id": _helper_body(schema, user_setting, "user"),
        "tenant_setting": _constant_body(setting),
        "user_setting": _constant_body(user_setting),
    }


def role_statements(
    spec: InstallSpec, *, create_owner: bool, create_app: bool
) -> list[sql.Composed]:
    """CREATE ROLE statements for roles that do not exist yet."""
    out: list[sql.Composed] = []
    if create_owner:
        out.append(
            sql.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER NOBYPASSRLS").format(
                sql.Identifier(spec.owner_role)
            )
        )
    if create_app:
        out.append(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB").format(
                sql.Identifier(spec.app_role)
            )
        )
    return out


def install_statements(spec: InstallSpec) -> list[sql.Composed]:
    """Schema and helper functions; safe to run again (``IF NOT EXISTS`` / ``OR REPLACE``)."""
    schema = sql.Identifier(spec.schema)
    owner = sql.Identifier(spec.owner_role)
    app = sql.Identifier(spec.app_role)
    fns = [
        ("_fail", "text, text", _fail_sql(spec.schema)),
        ("current_tenant", "", _helper_sql(spec.schema, "current_tenant", spec.setting, "tenant")),
        (
            "current_user_id",
            "",
            _helper_sql(spec.schema, "current_user_id", spec.user_setting, "user"),
        ),
        ("tenant_setting", "", _constant_sql(spec.schema, "tenant_setting", spec.setting)),
        ("user_setting", "", _constant_sql(spec.schema, "user_setting", spec.user_setting)),
    ]
    out = [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema, owner),
        sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema, owner),
        # Only the owner may create or replace objects here: the app role must not be
        # able to swap the helper the policies call.
        sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(schema),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, app),
    ]
    for name, args, create in fns:
        fn = sql.SQL("{}({})").format(sql.Identifier(spec.schema, name), sql.SQL(args))
        out.append(create)
        out.append(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(fn, owner))
        out.append(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(fn))
        out.append(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(fn, app))
    return out


def database_statements(spec: InstallSpec, dbname: str) -> list[sql.Composed]:
    """Take ``TEMPORARY`` on *dbname* away from ``PUBLIC`` and the app role.

    Every database grants ``TEMPORARY`` to ``PUBLIC`` by default, and ``pg_temp`` is
    searched first for relations and types: SQL on a leased connection could leave a
    temporary view named like an application table, or a domain named like a built-in
    type with a CHECK that calls a temporary function, and that code would run inside
    the next tenant's statements on the same connection. The owner role keeps it (for
    migrations that use temporary tables). ``spec.allow_temp`` skips this.
    """
    if spec.allow_temp:
        return []
    db = sql.Identifier(dbname)
    return [
        sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(db),
        sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM {}").format(
            db, sql.Identifier(spec.app_role)
        ),
        sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(db, sql.Identifier(spec.owner_role)),
    ]


def activity_statement(spec: InstallSpec) -> sql.Composed | None:
    """``track_activities = off`` for the app role, unless ``spec.keep_activity``.

    Every tenant's requests log in as the app role, and sessions of one role see each
    other's current statements in ``pg_stat_activity``: SQL on one lease could read what
    other tenants' requests are running. ``track_activities`` is a superuser setting
    (or one granted with ``GRANT SET ON PARAMETER``); ``install`` skips it, and says so,
    where the admin may not set it. The cost: those sessions show no query text.
    """
    if spec.keep_activity:
        return None
    return sql.SQL("ALTER ROLE {} SET track_activities = off").format(sql.Identifier(spec.app_role))


# --------------------------------------------------------------------------- protect


@dataclass(frozen=True, slots=True)
class ProtectSpec:
    """A table to protect. Types are ``format_type()`` names (``bigint``, ``uuid``...)."""

    table: QualifiedName
    tenant_column: str = "tenant_id"
    tenant_type: str = "bigint"
    pk_columns: tuple[str, ...] = ()
    user_column: str | None = None
    user_type: str | None = None
    user_scope: Literal["write", "all"] = "write"
    helper_schema: str = "tenantguard"
    # Compare with the session's scope (tenantguard.session_scope: per-tenant logins,
    # break-glass grants, else the bound setting) instead of the setting alone.
    role_scope: bool = False
    #: Signing is installed: the policies read the verifying view (``<schema>_keys``).
    signed: bool = False

    def __post_init__(self) -> None:
        check_identifier(self.tenant_column, "column name")
        cast_for_type(self.tenant_type)
        for col in self.pk_columns:
            check_identifier(col, "column name")
        if self.user_column is not None:
            check_identifier(self.user_column, "column name")
            cast_for_type(self.user_type or "text")
        if self.user_scope not in USER_POLICIES:
            raise UsageError(f"user_scope must be 'write' or 'all', not {self.user_scope!r}")


@dataclass(frozen=True, slots=True)
class PolicyState:
    permissive: bool
    command: str  # ALL, SELECT, INSERT, UPDATE, DELETE
    comment: str | None


@dataclass(slots=True)
class TableState:
    """What the catalog says about a table today (see ``tenantguard.admin.catalog``)."""

    rls_enabled: bool = False
    rls_forced: bool = False
    policies: dict[str, PolicyState] = field(default_factory=dict)
    has_tenant_index: bool = False


def _predicate(column: str, type_name: str, schema: str, fname: str) -> sql.Composed:
    # The helper call sits in a scalar sub-select so the planner evaluates it once per
    # query (an InitPlan) rather than once per row; it still drives an index scan.
    return sql.SQL("({col} = (SELECT {fn}()::{cast}))").format(
        col=sql.Identifier(column),
        fn=sql.Identifier(schema, fname),
        cast=cast_for_type(type_name),
    )


@dataclass(frozen=True, slots=True)
class _Policy:
    name: str
    permissive: bool
    command: str
    using: sql.Composed | None
    check: sql.Composed | None

    def create(self, table: QualifiedName) -> sql.Composed:
        parts: list[sql.Composable] = [
            sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO PUBLIC").format(
                sql.Identifier(self.name),
                table.ident,
                sql.SQL("PERMISSIVE" if self.permissive else "RESTRICTIVE"),
                sql.SQL(self.command),
            )
        ]
        if self.using is not None:
            parts.append(sql.SQL(" USING {}").format(self.using))
        if self.check is not None:
            parts.append(sql.SQL(" WITH CHECK {}").format(self.check))
        return sql.Composed(parts)

    @property
    def fingerprint(self) -> str:
        text = "|".join(
            [
                self.name,
                str(self.permissive),
                self.command,
                render(self.using) if self.using is not None else "",
                render(self.check) if self.check is not None else "",
            ]
        )
        return FINGERPRINT_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def _scope_predicate(column: str, type_name: str, schema: str, which: str) -> sql.Composed:
    # One scalar sub-select (an InitPlan, once per query) reading the session's row of
    # the scope view; equality with a scalar keeps index-ordered plans.
    return sql.SQL("({col} = (SELECT s.{which}::{cast} FROM {view} s))").format(
        col=sql.Identifier(column),
        which=sql.Identifier(which),
        view=sql.Identifier(schema, "session_scope"),
        cast=cast_for_type(type_name),
    )


#: The verifying view and the error path of signed contexts (see core.signed_sql).
CONTEXT_VIEW = "signed_context"
FAIL_FUNCTION = "_fail_signed"


def signed_reader(keys_schema: str, what: Literal["tenant", "user"]) -> sql.Composed:
    """``COALESCE((SELECT ctx.tenant FROM <keys>.signed_context ctx), <keys>._fail_signed(..))``:
    the verified value, or an error that says why there is none (COALESCE is lazy)."""
    return sql.SQL("COALESCE((SELECT ctx.{col} FROM {view} ctx), {fail}({what}))").format(
        col=sql.Identifier("tenant" if what == "tenant" else "user_id"),
        view=sql.Identifier(keys_schema, CONTEXT_VIEW),
        fail=sql.Identifier(keys_schema, FAIL_FUNCTION),
        what=sql.Literal(what),
    )


def signed_predicate(
    column: str, type_name: str, keys_schema: str, what: Literal["tenant", "user"]
) -> sql.Composed:
    """The column equals the verified value, read in a scalar sub-select: an InitPlan,
    so the MAC is checked once per statement and the plan stays cacheable."""
    return sql.SQL("({col} = (SELECT {reader}::{cast}))").format(
        col=sql.Identifier(column),
        reader=signed_reader(keys_schema, what),
        cast=cast_for_type(type_name),
    )


def _scope_policies(spec: ProtectSpec) -> list[_Policy]:
    args = (spec.tenant_column, spec.tenant_type, spec.helper_schema)
    read = _scope_predicate(*args, "read_tenant")
    write = _scope_predicate(*args, "write_tenant")
    return [
        # The guard admits the session's tenant and writes rows only while it may write
        # there, so a read-only break-glass grant cannot insert or move rows, whatever
        # permissive policy is added later.
        _Policy(GUARD_POLICY, False, "ALL", read, write),
        _Policy(ACCESS_POLICY, True, "ALL", read, write),
        # UPDATE and DELETE reach existing rows through USING: require the write scope.
        _Policy(SCOPE_UPDATE_POLICY, False, "UPDATE", write, write),
        _Policy(SCOPE_DELETE_POLICY, False, "DELETE", write, None),
    ]


def _policies(spec: ProtectSpec) -> list[_Policy]:
    if spec.role_scope:  # the scope view reads current_tenant(), which verifies when signed
        out = _scope_policies(spec)
        _add_user_policies(spec, out)
        return out
    keys = spec.helper_schema + "_keys"
    if spec.signed:
        tenant = signed_predicate(spec.tenant_column, spec.tenant_type, keys, "tenant")
    else:
        tenant = _predicate(
            spec.tenant_column, spec.tenant_type, spec.helper_schema, "current_tenant"
        )
    out = [
        # RESTRICTIVE: ANDed with every other policy, so a permissive policy added later
        # (by a migration or an admin) cannot widen access across tenants.
        _Policy(GUARD_POLICY, False, "ALL", tenant, tenant),
        # Some permissive policy must grant access at all; this one grants the tenant's rows.
        _Policy(ACCESS_POLICY, True, "ALL", tenant, tenant),
    ]
    _add_user_policies(spec, out)
    return out


def _add_user_policies(spec: ProtectSpec, out: list[_Policy]) -> None:
    if spec.user_column is not None:
        if spec.signed:
            keys = spec.helper_schema + "_keys"
            user = signed_predicate(spec.user_column, spec.user_type or "text", keys, "user")
        else:
            user = _predicate(
                spec.user_column, spec.user_type or "text", spec.helper_schema, "current_user_id"
            )
        for name, command in USER_POLICIES[spec.user_scope]:
            using = None if command == "INSERT" else user
            check = None if command in ("DELETE",) else user
            if command == "ALL":
                using, check = user, user
            out.append(_Policy(name, False, command, using, check))


def tenant_index_name(table: QualifiedName, column: str) -> str:
    base = f"{table.name}_{column}_tg_idx"
    if len(base.encode()) <= 63:
        return base
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    return base.encode()[:50].decode(errors="ignore") + "_" + digest + "_tg"


def protect_statements(spec: ProtectSpec, state: TableState | None = None) -> list[sql.Composed]:
    """Statements that bring *spec.table* to the protected state.

    With ``state=None`` every statement is returned (for migration files and the fixes
    the tools print), each safe to run again: tenantguard's own policies are dropped
    ``IF EXISTS`` before they are created, the index is created ``IF NOT EXISTS``. With
    the observed state only what is missing or different is returned, so running
    ``protect`` twice changes nothing the second time.
    """
    table = spec.table.ident
    fresh = state is None
    st = state or TableState()
    out: list[sql.Composed] = []
    if fresh or not st.rls_enabled:
        out.append(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table))
    if fresh or not st.rls_forced:
        # FORCE: the table owner is subject to the policies too.
        out.append(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(table))
    wanted = _policies(spec)
    for pol in wanted:
        have = st.policies.get(pol.name)
        if (
            have is not None
            and have.comment == pol.fingerprint
            and have.permissive == pol.permissive
            and have.command == pol.command
        ):
            continue
        if have is not None:
            out.append(sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(pol.name), table))
        elif fresh:  # another finding's fix (or an earlier run) may have created it
            out.append(
                sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(pol.name), table)
            )
        out.append(pol.create(spec.table))
        out.append(
            sql.SQL("COMMENT ON POLICY {} ON {} IS {}").format(
                sql.Identifier(pol.name), table, sql.Literal(pol.fingerprint)
            )
        )
    # Drop tenantguard's own user policies that the spec no longer asks for.
    wanted_names = {p.name for p in wanted}
    stale = sorted(
        name
        for name in st.policies
        if name.startswith(("tg_user_", "tg_scope_")) and name not in wanted_names
    )
    for name in stale:
        out.append(sql.SQL("DROP POLICY {} ON {}").format(sql.Identifier(name), table))
    if fresh or not st.has_tenant_index:
        out.append(tenant_index_statement(spec.table, spec.tenant_column, spec.pk_columns))
    return out


def tenant_index_statement(
    table: QualifiedName, tenant_column: str, pk_columns: Sequence[str]
) -> sql.Composed:
    """The index a tenant table needs: the tenant column, then the primary key's columns
    (a tenant's point lookups and newest-N lists are index range scans). The one answer
    ``protect`` creates and the audit (TGA160) prints."""
    cols = _dedupe([tenant_column, *pk_columns])
    return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
        sql.Identifier(tenant_index_name(table, tenant_column)),
        table.ident,
        sql.SQL(", ").join(sql.Identifier(c) for c in cols),
    )


def _dedupe(cols: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for c in cols:
        if c not in seen:
            seen.append(c)
    return seen


def grant_statements(
    tables: Sequence[QualifiedName],
    role: str,
    privileges: Sequence[str] = ("SELECT", "INSERT", "UPDATE", "DELETE"),
    sequences: Sequence[QualifiedName] = (),
) -> list[sql.Composed]:
    """GRANT the runtime role the DML it needs (never ownership, never TRUNCATE), and
    ``USAGE`` on *sequences*: those the tables' column defaults call ``nextval()`` on
    (``serial`` columns), without which the first insert that omits the id fails.
    Identity columns need no grant (PostgreSQL draws their values without a check)."""
    check_identifier(role, "role name")
    allowed = {"SELECT", "INSERT", "UPDATE", "DELETE"}
    bad = [p for p in privileges if p not in allowed]
    if bad:
        raise UsageError(f"unsupported privileges {bad}", hint=f"use a subset of {sorted(allowed)}")
    out: list[sql.Composed] = []
    schemas = sorted({t.schema for t in (*tables, *sequences)})
    for s in schemas:
        out.append(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(s), sql.Identifier(role)
            )
        )
    for t in tables:
        out.append(
            sql.SQL("GRANT {} ON {} TO {}").format(
                sql.SQL(", ").join(sql.SQL(p) for p in privileges), t.ident, sql.Identifier(role)
            )
        )
    if "INSERT" in privileges:
        for q in sequences:
            out.append(
                sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(q.ident, sql.Identifier(role))
            )
    return out
