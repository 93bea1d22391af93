"""The session scope: which tenants a session may reach, decided from its login role.

Shared by per-tenant logins (:mod:`tenantguard.admin.credentials`) and break-glass
grants (:mod:`tenantguard.admin.breakglass`). ``protect --role-scope`` makes the
policies compare the tenant column with the arrays of the view
``tenantguard.session_scope``, which returns exactly one row for the current session:

* the session's login (``session_user``) is a tenant login from the registry
  ``tenantguard.tenant_logins``: its tenant while the registry says it is live, else
  nothing. The tenant setting is never read, so SQL on that connection cannot
  become another tenant;
* the login ever received a break-glass grant (``tenantguard.breakglass_log``): the
  tenant it binds with the setting, only if one of its live grants covers it (for
  writing: a live write grant), else none; one granted tenant at a time;
* otherwise the pool model: ``tenantguard.current_tenant()``, the bound setting
  (which raises when unset, as without ``--role-scope``).

Each column is one tenant, never an array: ``tenant_id = <scalar>`` keeps the
index-ordered plans that ``= ANY(array)`` loses.

``session_user`` is the role the connection authenticated as; only a superuser can
change it (``SET SESSION AUTHORIZATION``), while ``SET ROLE`` and SECURITY DEFINER
functions change ``current_user`` only. Break-glass scope also requires
``current_user = session_user``, so it is not carried into another role.

The view is owned by the owner role, so the registry and the log are read with the
owner's rights; callers need only ``SELECT`` on the view (granted to PUBLIC: each
session sees its own row only).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from tenantguard.core.names import check_identifier
from tenantguard.core.sqlbuild import render
from tenantguard.errors import NotInstalledError

__all__ = [
    "GENESIS_HASH",
    "SCOPE_POLICY",
    "ensure_scope",
    "schema_owner",
    "scope_installed",
    "scope_statements",
    "scoped_tables",
]

# Tables protected with --role-scope carry this policy (see core.sqlbuild).
SCOPE_POLICY = "tg_scope_delete"
GENESIS_HASH = "0" * 64
MAX_BREAKGLASS_TTL = "24 hours"


def _q(template: str, **names: str) -> sql.Composed:
    """*template* with ``{name}`` placeholders filled by identifiers (schema-qualified by dots)."""
    return sql.SQL(template).format(**{k: sql.Identifier(*v.split(".")) for k, v in names.items()})


def _body(template: str, schema: str) -> sql.Literal:
    """A function body with ``{s}`` replaced by the quoted schema, as a string literal."""
    return sql.Literal(template.replace("{s}", render(sql.Identifier(schema))))


_APPEND_ONLY_BODY = """
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'insufficient_privilege',
        MESSAGE = format('tenantguard: %s on the break-glass log is refused: it is append-only', TG_OP),
        HINT = 'revoke a grant with tenantguard admin revoke; the log keeps every row';
END
"""

# Length-prefixed fields: no separator can be forged by a value. "~" is NULL.
# A registry row outlives its role: while the role exists, deleting the row would send
# its sessions to the pool model's branch (the setting).
_REGISTRY_GUARD_BODY = """
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = OLD.login) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('tenantguard: login %I still exists; its registry row stays',
                                        OLD.login),
            HINT = 'revoke it with tenantguard credentials revoke, which drops the role';
    END IF;
    RETURN OLD;
END
"""

# Every row must extend the chain: next seq, previous row's hash, its own hash right.
_CHAIN_CHECK_BODY = """
DECLARE
    v_seq bigint;
    v_prev text;
BEGIN
    SELECT g.seq, g.hash INTO v_seq, v_prev FROM {s}.breakglass_log g ORDER BY g.seq DESC LIMIT 1;
    IF NEW.seq IS DISTINCT FROM coalesce(v_seq, 0) + 1
       OR NEW.prev_hash IS DISTINCT FROM coalesce(v_prev, repeat('0', 64))
       OR NEW.hash IS DISTINCT FROM {s}._bg_hash(NEW.prev_hash, NEW.seq, NEW.at, NEW.actor,
              NEW.action, NEW.grant_seq, NEW.grantee, NEW.tenants, NEW.can_write, NEW.reason,
              NEW.ticket, NEW.expires_at) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = 'tenantguard: a break-glass log row must extend the hash chain',
            HINT = 'create grants with tenantguard admin grant (tenantguard.breakglass_grant)';
    END IF;
    RETURN NEW;
END
"""

_FIELD_BODY = (
    "SELECT CASE WHEN $1 IS NULL THEN '~' ELSE pg_catalog.length($1)::text || ':' || $1 END"
)

_HASH_BODY = """
SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
    p_prev
    || {s}._bg_field(p_seq::text)
    || {s}._bg_field(((EXTRACT(epoch FROM p_at) * 1000000)::bigint)::text)
    || {s}._bg_field(p_actor::text)
    || {s}._bg_field(p_action)
    || {s}._bg_field(p_grant_seq::text)
    || {s}._bg_field(p_grantee::text)
    || {s}._bg_field(pg_catalog.cardinality(p_tenants)::text)
    || coalesce((SELECT pg_catalog.string_agg({s}._bg_field(t), '' ORDER BY o)
                 FROM pg_catalog.unnest(p_tenants) WITH ORDINALITY AS u(t, o)), '')
    || {s}._bg_field(CASE WHEN p_write THEN 't' ELSE 'f' END)
    || {s}._bg_field(p_reason)
    || {s}._bg_field(p_ticket)
    || {s}._bg_field(((EXTRACT(epoch FROM p_expires) * 1000000)::bigint)::text),
    'UTF8')), 'hex')
"""

# Grants the privileges a break-glass role needs on every --role-scope table, from
# the live grants (a read grant: SELECT; a write grant: DML), and revokes the rest.
_SYNC_PRIVILEGES_BODY = """
DECLARE
    t regclass;
    sq regclass;
    n name;
    live_read boolean;
    live_write boolean;
BEGIN
    SELECT pg_catalog.bool_or(true), pg_catalog.bool_or(g.can_write)
      INTO live_read, live_write
      FROM {s}.breakglass_log g
     WHERE g.action = 'grant' AND g.grantee = p_grantee AND g.expires_at > pg_catalog.now()
       AND NOT EXISTS (SELECT 1 FROM {s}.breakglass_log r
                        WHERE r.action = 'revoke' AND r.grant_seq = g.seq);
    FOR t, n IN
        SELECT p.polrelid::regclass, ns.nspname
          FROM pg_catalog.pg_policy p
          JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
          JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
         WHERE p.polname = 'tg_scope_delete'
    LOOP
        IF coalesce(live_read, false) THEN
            EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %I', n, p_grantee);
            EXECUTE pg_catalog.format('GRANT SELECT ON %s TO %I', t, p_grantee);
        ELSE
            EXECUTE pg_catalog.format('REVOKE SELECT ON %s FROM %I', t, p_grantee);
        END IF;
        IF coalesce(live_write, false) THEN
            EXECUTE pg_catalog.format('GRANT INSERT, UPDATE, DELETE ON %s TO %I', t, p_grantee);
        ELSE
            EXECUTE pg_catalog.format('REVOKE INSERT, UPDATE, DELETE ON %s FROM %I', t, p_grantee);
        END IF;
        -- The sequences inserts draw ids from (serial columns, DEFAULT nextval(...)).
        FOR sq IN
            SELECT DISTINCT sc.oid::regclass
              FROM pg_catalog.pg_attrdef ad
              JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_attrdef'::regclass
                   AND d.objid = ad.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
              JOIN pg_catalog.pg_class sc ON sc.oid = d.refobjid AND sc.relkind = 'S'
             WHERE ad.adrelid = t
        LOOP
            IF coalesce(live_write, false) THEN
                EXECUTE pg_catalog.format('GRANT USAGE ON SEQUENCE %s TO %I', sq, p_grantee);
            ELSE
                EXECUTE pg_catalog.format('REVOKE USAGE ON SEQUENCE %s FROM %I', sq, p_grantee);
            END IF;
        END LOOP;
    END LOOP;
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA {s} TO %I', p_grantee);
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION {s}.current_tenant() TO %I', p_grantee);
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION {s}._fail(text, text) TO %I', p_grantee);
END
"""

_APPEND_BODY = """
DECLARE
    v_seq bigint;
    v_prev text;
    v_at timestamptz := pg_catalog.now();
BEGIN
    -- One writer at a time: the chain is gapless and each row hashes its predecessor.
    LOCK TABLE {s}.breakglass_log IN EXCLUSIVE MODE;
    SELECT g.seq, g.hash INTO v_seq, v_prev FROM {s}.breakglass_log g ORDER BY g.seq DESC LIMIT 1;
    v_seq := coalesce(v_seq, 0) + 1;
    v_prev := coalesce(v_prev, repeat('0', 64));
    INSERT INTO {s}.breakglass_log
        (seq, at, actor, action, grant_seq, grantee, tenants, can_write, reason, ticket,
         expires_at, prev_hash, hash)
    VALUES
        (v_seq, v_at, session_user, p_action, p_grant_seq, p_grantee, p_tenants, p_write,
         p_reason, p_ticket, p_expires, v_prev,
         {s}._bg_hash(v_prev, v_seq, v_at, session_user, p_action, p_grant_seq, p_grantee,
                      p_tenants, p_write, p_reason, p_ticket, p_expires));
    RETURN v_seq;
END
"""

_GRANT_BODY = """
DECLARE
    r pg_catalog.pg_roles%ROWTYPE;
    v_seq bigint;
BEGIN
    IF p_reason IS NULL OR pg_catalog.btrim(p_reason) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'tenantguard: a break-glass grant needs a reason';
    END IF;
    IF p_ticket IS NULL OR pg_catalog.btrim(p_ticket) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'tenantguard: a break-glass grant needs a ticket reference';
    END IF;
    IF p_tenants IS NULL OR pg_catalog.cardinality(p_tenants) = 0
       OR pg_catalog.array_position(p_tenants, NULL) IS NOT NULL
       OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p_tenants) t WHERE pg_catalog.btrim(t) = '') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'tenantguard: a break-glass grant needs at least one tenant id, none empty';
    END IF;
    IF p_ttl IS NULL OR p_ttl <= interval '0' OR p_ttl > interval '{max_ttl}' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'tenantguard: a break-glass TTL must be positive and at most {max_ttl}';
    END IF;
    SELECT * INTO r FROM pg_catalog.pg_roles WHERE rolname = p_grantee;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('tenantguard: role %I does not exist', p_grantee),
            HINT = 'create a dedicated LOGIN role for the person or job first';
    END IF;
    IF NOT r.rolcanlogin OR r.rolsuper OR r.rolbypassrls OR r.rolcreaterole OR r.rolreplication THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('tenantguard: role %I cannot receive break-glass grants: '
                'it must be LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOREPLICATION', p_grantee);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('tenantguard: role %I is a member of other roles; '
                'a break-glass role must be a dedicated login that inherits nothing', p_grantee);
    END IF;
    IF EXISTS (SELECT 1 FROM {s}.tenant_logins l WHERE l.login = p_grantee) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('tenantguard: role %I is a per-tenant login', p_grantee);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
                WHERE p.polname = 'tg_scope_delete' AND c.relowner = r.oid) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('tenantguard: role %I owns protected tables', p_grantee);
    END IF;
    -- A role new to break-glass must not already use the tables (the application's pool
    -- login does): its tenant setting would stop counting and it would see the grant's tenants.
    IF NOT EXISTS (SELECT 1 FROM {s}.breakglass_log g WHERE g.grantee = p_grantee)
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                    WHERE p.polname = 'tg_scope_delete'
                      AND pg_catalog.has_table_privilege(r.oid, p.polrelid,
                                                         'SELECT, INSERT, UPDATE, DELETE')) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('tenantguard: role %I already has privileges on protected '
                'tables (is it the application''s login?); break-glass needs a dedicated role',
                p_grantee),
            HINT = 'create a separate LOGIN role for break-glass access';
    END IF;
    v_seq := {s}._bg_append('grant', NULL, p_grantee, p_tenants, p_write, p_reason, p_ticket,
                            pg_catalog.now() + p_ttl);
    PERFORM {s}._bg_sync_privileges(p_grantee);
    RETURN v_seq;
END
"""

_REVOKE_BODY = """
DECLARE
    g {s}.breakglass_log%ROWTYPE;
    v_seq bigint;
BEGIN
    IF p_reason IS NULL OR pg_catalog.btrim(p_reason) = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'tenantguard: revoking a break-glass grant needs a reason';
    END IF;
    SELECT * INTO g FROM {s}.breakglass_log WHERE seq = p_grant AND action = 'grant';
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = pg_catalog.format('tenantguard: no break-glass grant #%s', p_grant),
            HINT = 'tenantguard admin log lists the grants';
    END IF;
    IF EXISTS (SELECT 1 FROM {s}.breakglass_log r WHERE r.action = 'revoke' AND r.grant_seq = p_grant) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('tenantguard: grant #%s is already revoked', p_grant);
    END IF;
    v_seq := {s}._bg_append('revoke', p_grant, g.grantee, g.tenants, g.can_write, p_reason,
                            g.ticket, g.expires_at);
    PERFORM {s}._bg_sync_privileges(g.grantee);
    RETURN v_seq;
END
"""

# Kept small on purpose: every plan node here is initialised on every query of every
# protected table (tools/role_scope_cost.py). The pool model's path costs one index
# probe of the registry and one of the log; whether a grant admits the bound tenant is
# computed by _bg_admits only for break-glass sessions. One tenant per column, never an
# array: `tenant_id = <scalar>` keeps index-ordered plans (`= ANY(array)` sorts).
_VIEW = """
SELECT
    CASE WHEN l.login IS NOT NULL THEN
             CASE WHEN l.revoked_at IS NULL AND l.valid_until > pg_catalog.now() THEN l.tenant END
         WHEN EXISTS (SELECT 1 FROM {s}.breakglass_log g
                       WHERE g.action = 'grant' AND g.grantee = session_user) THEN
             CASE WHEN current_user = session_user AND {s}._bg_admits({s}.current_tenant(), false)
                  THEN {s}.current_tenant() END
         ELSE {s}.current_tenant() END AS read_tenant,
    CASE WHEN l.login IS NOT NULL THEN
             CASE WHEN l.revoked_at IS NULL AND l.valid_until > pg_catalog.now() THEN l.tenant END
         WHEN EXISTS (SELECT 1 FROM {s}.breakglass_log g
                       WHERE g.action = 'grant' AND g.grantee = session_user) THEN
             CASE WHEN current_user = session_user AND {s}._bg_admits({s}.current_tenant(), true)
                  THEN {s}.current_tenant() END
         ELSE {s}.current_tenant() END AS write_tenant
FROM (SELECT session_user AS who) me
LEFT JOIN {s}.tenant_logins l ON l.login = me.who
"""

# Does a live grant of the session's login cover p_tenant (for writing, with p_write)?
# SECURITY DEFINER to read the log; it answers for session_user only.
_BG_ADMITS_BODY = """
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM {s}.breakglass_log g
         WHERE g.action = 'grant' AND g.grantee = session_user
           AND p_tenant = ANY (g.tenants)
           AND g.expires_at > pg_catalog.now() AND (g.can_write OR NOT p_write)
           AND NOT EXISTS (SELECT 1 FROM {s}.breakglass_log r
                            WHERE r.action = 'revoke' AND r.grant_seq = g.seq));
END
"""

_BG_ARGS = (
    "p_prev text, p_seq bigint, p_at timestamptz, p_actor name, p_action text, "
    "p_grant_seq bigint, p_grantee name, p_tenants text[], p_write boolean, p_reason text, "
    "p_ticket text, p_expires timestamptz"
)
_APPEND_ARGS = (
    "p_action text, p_grant_seq bigint, p_grantee name, p_tenants text[], p_write boolean, "
    "p_reason text, p_ticket text, p_expires timestamptz"
)
_GRANT_ARGS = (
    "p_grantee name, p_tenants text[], p_write boolean, p_reason text, p_ticket text, "
    "p_ttl interval"
)
_PINNED = "SET search_path = pg_catalog, pg_temp"


def scope_statements(schema: str, owner: str) -> list[sql.Composed]:
    """Registry, log, view and functions of the session scope; idempotent."""
    check_identifier(schema, "schema name")
    check_identifier(owner, "role name")
    s = schema
    o = sql.Identifier(owner)
    out: list[sql.Composed] = [
        _q(
            "CREATE TABLE IF NOT EXISTS {t} ("
            " login name PRIMARY KEY,"
            " tenant text NOT NULL,"
            " group_role name NOT NULL,"
            " slot text NOT NULL,"
            " valid_until timestamptz NOT NULL,"
            " issued_at timestamptz NOT NULL DEFAULT pg_catalog.now(),"
            " revoked_at timestamptz)",
            t=f"{s}.tenant_logins",
        ),
        _q(
            "CREATE TABLE IF NOT EXISTS {t} ("
            " seq bigint PRIMARY KEY CHECK (seq > 0),"
            " at timestamptz NOT NULL,"
            " actor name NOT NULL,"
            " action text NOT NULL CHECK (action IN ('grant', 'revoke')),"
            " grant_seq bigint REFERENCES {t} (seq),"
            " grantee name NOT NULL,"
            " tenants text[] NOT NULL,"
            " can_write boolean NOT NULL,"
            " reason text NOT NULL,"
            " ticket text NOT NULL,"
            " expires_at timestamptz NOT NULL,"
            " prev_hash text NOT NULL,"
            " hash text NOT NULL UNIQUE,"
            " CHECK ((action = 'grant') = (grant_seq IS NULL)))",
            t=f"{s}.breakglass_log",
        ),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS breakglass_log_grantee_idx ON {} (grantee) "
            "WHERE action = 'grant'"
        ).format(sql.Identifier(s, "breakglass_log")),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS breakglass_log_revoke_idx ON {} (grant_seq) "
            "WHERE action = 'revoke'"
        ).format(sql.Identifier(s, "breakglass_log")),
    ]
    for table in ("tenant_logins", "breakglass_log"):
        out.append(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(s, table), o))
        out.append(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(sql.Identifier(s, table)))
    functions: list[tuple[str, str, str, sql.Composed]] = [
        (
            "_bg_append_only",
            "",
            "trigger",
            sql.SQL("LANGUAGE plpgsql {} AS {}").format(
                sql.SQL(_PINNED), sql.Literal(_APPEND_ONLY_BODY)
            ),
        ),
        (
            "_bg_field",
            "p_value text",
            "text",
            sql.SQL("LANGUAGE sql IMMUTABLE {} AS {}").format(
                sql.SQL(_PINNED), sql.Literal(_FIELD_BODY)
            ),
        ),
        (
            "_bg_hash",
            _BG_ARGS,
            "text",
            sql.SQL("LANGUAGE sql IMMUTABLE {} AS {}").format(
                sql.SQL(_PINNED), _body(_HASH_BODY, s)
            ),
        ),
    ]
    functions.append(
        (
            "_registry_guard",
            "",
            "trigger",
            sql.SQL("LANGUAGE plpgsql {} AS {}").format(
                sql.SQL(_PINNED), sql.Literal(_REGISTRY_GUARD_BODY)
            ),
        )
    )
    functions.append(
        (
            "_bg_chain_check",
            "",
            "trigger",
            sql.SQL("LANGUAGE plpgsql {} AS {}").format(
                sql.SQL(_PINNED), _body(_CHAIN_CHECK_BODY, s)
            ),
        )
    )
    out += _functions(s, o, functions, public=False)
    out.append(
        sql.SQL(
            "CREATE OR REPLACE TRIGGER tg_registry_guard BEFORE DELETE ON {} "
            "FOR EACH ROW EXECUTE FUNCTION {}()"
        ).format(sql.Identifier(s, "tenant_logins"), sql.Identifier(s, "_registry_guard"))
    )
    out.append(
        sql.SQL(
            "CREATE OR REPLACE TRIGGER tg_chain_check BEFORE INSERT ON {} "
            "FOR EACH ROW EXECUTE FUNCTION {}()"
        ).format(sql.Identifier(s, "breakglass_log"), sql.Identifier(s, "_bg_chain_check"))
    )
    out.append(
        sql.SQL(
            "CREATE OR REPLACE TRIGGER tg_append_only BEFORE UPDATE OR DELETE ON {} "
            "FOR EACH ROW EXECUTE FUNCTION {}()"
        ).format(sql.Identifier(s, "breakglass_log"), sql.Identifier(s, "_bg_append_only"))
    )
    out.append(
        sql.SQL(
            "CREATE OR REPLACE TRIGGER tg_no_truncate BEFORE TRUNCATE ON {} "
            "FOR EACH STATEMENT EXECUTE FUNCTION {}()"
        ).format(sql.Identifier(s, "breakglass_log"), sql.Identifier(s, "_bg_append_only"))
    )
    definer = sql.SQL("LANGUAGE plpgsql SECURITY DEFINER {} AS {}")
    out += _functions(
        s,
        o,
        [
            (
                "_bg_append",
                _APPEND_ARGS,
                "bigint",
                definer.format(sql.SQL(_PINNED), _body(_APPEND_BODY, s)),
            ),
            (
                "_bg_sync_privileges",
                "p_grantee name",
                "void",
                definer.format(sql.SQL(_PINNED), _body(_SYNC_PRIVILEGES_BODY, s)),
            ),
            (
                "breakglass_grant",
                _GRANT_ARGS,
                "bigint",
                definer.format(
                    sql.SQL(_PINNED),
                    _body(_GRANT_BODY.replace("{max_ttl}", MAX_BREAKGLASS_TTL), s),
                ),
            ),
            (
                "breakglass_revoke",
                "p_grant bigint, p_reason text",
                "bigint",
                definer.format(sql.SQL(_PINNED), _body(_REVOKE_BODY, s)),
            ),
        ],
        public=False,
    )
    out += _functions(
        s,
        o,
        [
            (
                "_bg_admits",
                "p_tenant text, p_write boolean",
                "boolean",
                sql.SQL("LANGUAGE plpgsql STABLE SECURITY DEFINER {} AS {}").format(
                    sql.SQL(_PINNED), _body(_BG_ADMITS_BODY, s)
                ),
            )
        ],
        public=True,
    )
    view = sql.Identifier(s, "session_scope")
    out += [
        sql.SQL("CREATE OR REPLACE VIEW {} WITH (security_barrier) AS {}").format(
            view,
            sql.SQL(_VIEW.replace("{s}", render(sql.Identifier(s)))),
        ),
        sql.SQL("ALTER VIEW {} OWNER TO {}").format(view, o),
        sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(view),
        # Each session sees its own row only (the view filters on session_user).
        sql.SQL("GRANT SELECT ON {} TO PUBLIC").format(view),
    ]
    return out


def _functions(
    schema: str,
    owner: sql.Identifier,
    specs: list[tuple[str, str, str, sql.Composed]],
    *,
    public: bool,
) -> list[sql.Composed]:
    out: list[sql.Composed] = []
    for name, args, returns, rest in specs:
        fn = sql.Identifier(schema, name)
        arg_types = sql.SQL(_arg_types(args))
        out.append(
            sql.SQL("CREATE OR REPLACE FUNCTION {}({}) RETURNS {} {}").format(
                fn,
                sql.SQL(args),
                sql.SQL(returns),
                rest,
            )
        )
        out.append(sql.SQL("ALTER FUNCTION {}({}) OWNER TO {}").format(fn, arg_types, owner))
        # Only the owner (and the administrators who are members of it) may call these,
        # but for the policies' own helpers, which answer for the caller's session only.
        out.append(sql.SQL("REVOKE ALL ON FUNCTION {}({}) FROM PUBLIC").format(fn, arg_types))
        if public:
            out.append(sql.SQL("GRANT EXECUTE ON FUNCTION {}({}) TO PUBLIC").format(fn, arg_types))
    return out


def _arg_types(args: str) -> str:
    """``p_x text, p_y bigint`` -> ``text, bigint``."""
    return ", ".join(part.strip().split(" ", 1)[1] for part in args.split(",") if part.strip())


def schema_owner(conn: psycopg.Connection[Any], schema: str) -> str:
    """The role that owns the tenantguard schema (``install --owner-role``)."""
    row = conn.execute(
        "SELECT pg_catalog.pg_get_userbyid(nspowner)::text FROM pg_catalog.pg_namespace "
        "WHERE nspname = %s",
        (schema,),
    ).fetchone()
    if row is None:
        raise NotInstalledError(f"the schema {schema!r}")
    return str(row[0])


def ensure_scope(conn: psycopg.Connection[Any], schema: str = "tenantguard") -> list[str]:
    """Create or update the session-scope objects in the caller's transaction; the SQL run."""
    owner = schema_owner(conn, schema)
    if conn.execute(
        "SELECT pg_catalog.to_regprocedure(%s)", (f"{schema}.current_tenant()",)
    ).fetchone() == (None,):
        raise NotInstalledError(f"the helper function {schema}.current_tenant()")
    ran: list[str] = []
    for stmt in scope_statements(schema, owner):
        conn.execute(stmt)
        ran.append(render(stmt) + ";")
    return ran


def scope_installed(conn: psycopg.Connection[Any], schema: str = "tenantguard") -> bool:
    row = conn.execute(
        "SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
        (render(sql.Identifier(schema, "session_scope")),),
    ).fetchone()
    return bool(row and row[0])


def scoped_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(schema, table) of every table protected with ``--role-scope``."""
    rows = conn.execute(
        "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_policy p "
        "JOIN pg_catalog.pg_class c ON c.oid = p.polrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE p.polname = %s ORDER BY 1, 2",
        (SCOPE_POLICY,),
    ).fetchall()
    return [(str(a), str(b)) for a, b in rows]
