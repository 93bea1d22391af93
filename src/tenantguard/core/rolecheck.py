"""Is a runtime role able to step around row-level security?

One catalog query, shared by ``install`` (checking the app role by name), the pools
(checking ``current_user`` at start and on every new connection) and the audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, LiteralString

from psycopg import sql

__all__ = [
    "ALL_DATA_ROLES",
    "CODE_KINDS",
    "KINDS",
    "ROLE_CHECK_QUERY",
    "SERVER_ACCESS_ROLES",
    "SERVER_FILE_FUNCTIONS",
    "RoleReport",
    "code_report",
    "role_report",
    "runtime_role_sql",
    "setting_ident",
]

# What role_report can find, in the order it reports it.
KINDS = (
    "superuser",
    "bypassrls",
    "member_of_bypass",
    "createrole",
    "member_of_createrole",
    "member_of_server_access",
    "server_file_function",
    "replication",
    "owner",
    "member_of_owner",
    "setting_default",
)
# What code_report can find: ways for SQL on a leased connection to create code (a
# function, a view, a domain) that later runs inside another tenant's transaction.
CODE_KINDS = ("temp", "create_database", "create_schema", "owned_objects")
# Predefined roles that reach the server's files and programs: a member runs COPY ... TO
# PROGRAM as the server's OS user (which logs in as a superuser on most installations), or
# reads and writes any file the server can.
SERVER_ACCESS_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
# Predefined roles that read or write every table and view past its grants: row level
# security still applies to tenant tables, but not to what has none (tenantguard's
# signing keys, the role-scope registry, the break-glass log: the seventeenth review read
# the keys and forged any tenant's context).
ALL_DATA_ROLES = ("pg_read_all_data", "pg_write_all_data")
# Built-ins that read or write files on the server (superuser-only unless granted): the
# current WAL segment holds every tenant's recent writes (the seventeenth review read one).
SERVER_FILE_FUNCTIONS = (
    "pg_read_file",
    "pg_read_binary_file",
    "lo_import",
    "lo_export",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
)
# Before PostgreSQL 16, CREATEROLE can grant any role that is not a superuser (including
# the owner of the tenant tables) to anyone, itself included.
CREATEROLE_GRANTS_ANY_BEFORE = 160000

# Parameters: role (NULL = current_user), tenant_column, tenant setting, user setting.
ROLE_CHECK_QUERY: LiteralString = """
WITH target AS (
    SELECT r.oid, r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole
    FROM pg_catalog.pg_roles r
    WHERE r.rolname = coalesce(%(role)s,
                               CASE WHEN %(as_session_user)s THEN session_user
                                    ELSE current_user END)
), protected AS (
    SELECT c.oid, c.relowner
    FROM pg_catalog.pg_class c
    WHERE c.relkind IN ('r', 'p')
      AND (c.relrowsecurity
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attname = %(column)s
                        AND a.attnum > 0 AND NOT a.attisdropped))
      AND c.relnamespace NOT IN (SELECT oid FROM pg_catalog.pg_namespace
                                 WHERE nspname IN ('pg_catalog', 'information_schema'))
), reach AS (
    -- Every role whose privileges SQL on the login's connection can use: its own, the
    -- ones it inherits, and the ones it can SET [LOCAL] ROLE to (a NOINHERIT membership
    -- or, from PostgreSQL 16, INHERIT FALSE: has_*_privilege(login) does not see those;
    -- the sixteenth review). MEMBER covers all of them.
    SELECT r.oid, r.rolname FROM pg_catalog.pg_roles r, target t
    WHERE pg_catalog.pg_has_role(t.oid, r.oid, 'MEMBER')
), tenant_tables AS (  -- what a dedicated runtime role needs grants on (superuser advice)
    SELECT c.oid, c.relnamespace, c.relname FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tenantguard')
      AND n.nspname NOT LIKE 'pg\\_%%'
      AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attname = %(column)s
                    AND a.attnum > 0 AND NOT a.attisdropped)
)
SELECT
    t.rolname::text,
    t.rolsuper,
    t.rolbypassrls,
    ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r
          WHERE r.oid <> t.oid AND (r.rolsuper OR r.rolbypassrls)
            AND pg_catalog.pg_has_role(t.oid, r.oid, 'MEMBER') ORDER BY 1),
    ARRAY(SELECT c.oid::regclass::text FROM protected c WHERE c.relowner = t.oid ORDER BY 1),
    ARRAY(SELECT DISTINCT o.rolname::text FROM protected c
          JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
          WHERE o.oid <> t.oid AND pg_catalog.pg_has_role(t.oid, o.oid, 'MEMBER') ORDER BY 1),
    ARRAY(SELECT DISTINCT CASE WHEN s.setrole = 0 THEN 'database' ELSE 'role' END
                 || ':' || split_part(cfg, '=', 1)
          FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS cfg
          WHERE s.setrole IN (t.oid, 0)
            AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                      WHERE datname = current_database()))
            AND split_part(cfg, '=', 1) IN (%(setting)s, %(user_setting)s)
          ORDER BY 1),
    t.rolcreaterole,
    ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r
          WHERE r.oid <> t.oid AND r.rolcreaterole AND NOT (r.rolsuper OR r.rolbypassrls)
            AND pg_catalog.pg_has_role(t.oid, r.oid, 'MEMBER') ORDER BY 1),
    pg_catalog.current_setting('server_version_num')::int,
    EXISTS (SELECT 1 FROM reach r WHERE pg_catalog.has_database_privilege(
                r.oid, pg_catalog.current_database(), 'TEMPORARY')),
    EXISTS (SELECT 1 FROM reach r WHERE pg_catalog.has_database_privilege(
                r.oid, pg_catalog.current_database(), 'CREATE')),
    ARRAY(SELECT DISTINCT n.nspname::text FROM pg_catalog.pg_namespace n, reach r
          WHERE pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')
            AND n.nspname !~ '^pg_(temp|toast_temp)_[0-9]+$' ORDER BY 1),
    pg_catalog.current_database()::text,
    ARRAY(SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM tenant_tables c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE t.rolsuper ORDER BY 1),
    ARRAY(SELECT DISTINCT quote_ident(n.nspname) FROM tenant_tables c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE t.rolsuper ORDER BY 1),
    -- the roles it can become or use whose privileges give it more code than its own
    ARRAY(SELECT r.rolname::text FROM reach r
          WHERE r.oid <> t.oid
            AND ((pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(),
                                                    'TEMPORARY')
                  AND NOT pg_catalog.has_database_privilege(
                      t.oid, pg_catalog.current_database(), 'TEMPORARY'))
                 OR (pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(),
                                                       'CREATE')
                     AND NOT pg_catalog.has_database_privilege(
                         t.oid, pg_catalog.current_database(), 'CREATE'))
                 OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                            WHERE pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')
                              AND NOT pg_catalog.has_schema_privilege(t.oid, n.oid, 'CREATE')
                              AND n.nspname !~ '^pg_(temp|toast_temp)_[0-9]+$'))
          ORDER BY 1),
    ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r
          WHERE r.rolname = ANY (%(server_roles)s)
            AND pg_catalog.pg_has_role(t.oid, r.oid, 'MEMBER') ORDER BY 1),
    -- server file functions it (or a role it can become) may execute
    ARRAY(SELECT DISTINCT p.oid::regprocedure::text FROM pg_catalog.pg_proc p, reach r
          WHERE p.pronamespace = 'pg_catalog'::regnamespace
            AND p.proname = ANY (%(file_functions)s)
            AND pg_catalog.has_function_privilege(r.oid, p.oid, 'EXECUTE') ORDER BY 1),
    -- objects it (or a role it can become) owns, of any kind, or may add triggers to,
    -- outside the protected tables: an owner attaches code to them without any CREATE
    -- privilege (a policy, a rule, a trigger, a new view or function body, a domain CHECK),
    -- grants itself CREATE back (the database, a schema), or drops them with CASCADE
    -- (an extension: the columns of its types go). pg_shdepend records every owner; large
    -- objects (any login makes them) and temporary objects are left out.
    ARRAY(SELECT o.what FROM (
        SELECT pg_catalog.pg_describe_object(sd.classid, sd.objid, sd.objsubid)
               || CASE WHEN r.oid <> t.oid THEN ' (owned by ' || pg_catalog.quote_ident(r.rolname) || ')' ELSE '' END AS what
        FROM pg_catalog.pg_shdepend sd JOIN reach r ON r.oid = sd.refobjid
        WHERE sd.refclassid = 'pg_catalog.pg_authid'::regclass AND sd.deptype = 'o'
          AND (sd.dbid = (SELECT oid FROM pg_catalog.pg_database
                          WHERE datname = pg_catalog.current_database())
               OR (sd.classid = 'pg_catalog.pg_database'::regclass
                   AND sd.objid = (SELECT oid FROM pg_catalog.pg_database
                                   WHERE datname = pg_catalog.current_database())))
          AND sd.classid NOT IN ('pg_catalog.pg_largeobject'::regclass,
                                 'pg_catalog.pg_largeobject_metadata'::regclass)
          AND NOT (sd.classid = 'pg_catalog.pg_class'::regclass
                   AND (sd.objid IN (SELECT oid FROM protected)
                        OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                   WHERE c.oid = sd.objid
                                     AND n.nspname ~ '^pg_(temp|toast_temp)_[0-9]+$')))
          AND NOT (sd.classid = 'pg_catalog.pg_proc'::regclass
                   AND EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                               WHERE p.oid = sd.objid AND n.nspname ~ '^pg_temp_[0-9]+$'))
          AND NOT (sd.classid = 'pg_catalog.pg_type'::regclass
                   AND EXISTS (SELECT 1 FROM pg_catalog.pg_type y
                               JOIN pg_catalog.pg_namespace n ON n.oid = y.typnamespace
                               WHERE y.oid = sd.objid AND n.nspname ~ '^pg_temp_[0-9]+$'))
        UNION
        SELECT 'trigger on ' || c.oid::regclass::text || CASE WHEN r.oid <> t.oid THEN ' (granted to ' || pg_catalog.quote_ident(r.rolname) || ')' ELSE '' END
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
             reach r
        WHERE c.relkind IN ('r', 'p', 'v', 'f') AND c.relowner <> r.oid
          AND pg_catalog.has_table_privilege(r.oid, c.oid, 'TRIGGER')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
          AND n.nspname !~ '^pg_(temp|toast_temp)_[0-9]+$'
    ) o ORDER BY 1),
    -- REPLICATION on it or a role it can become: logical decoding reads every tenant's
    -- writes (row level security does not apply to the WAL), a slot keeps WAL for good
    EXISTS (SELECT 1 FROM reach r JOIN pg_catalog.pg_roles x ON x.oid = r.oid
            WHERE x.rolreplication)
FROM target t
"""


@dataclass(frozen=True, slots=True)
class RoleReport:
    """What is wrong with a role: ``problems[i]`` is fixed by ``fixes[i]``; ``kinds[i]``
    says which check found it (see :data:`KINDS`)."""

    role: str
    problems: list[str]
    fixes: list[str]
    kinds: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not self.problems


def role_params(
    role: str | None,
    column: str,
    setting: str,
    user_setting: str,
    *,
    as_session_user: bool = False,
) -> dict[str, Any]:
    """Parameters for :data:`ROLE_CHECK_QUERY`: *role* by name, or (None) the session's
    ``current_user`` (``session_user`` with *as_session_user*)."""
    return {
        "role": role,
        "column": column,
        "setting": setting,
        "user_setting": user_setting,
        "as_session_user": as_session_user,
        "server_roles": list(SERVER_ACCESS_ROLES + ALL_DATA_ROLES),
        "file_functions": list(SERVER_FILE_FUNCTIONS),
    }


def _q(name: str) -> str:
    return sql.Identifier(name).as_string()


def setting_ident(setting: str) -> str:
    """A (custom) setting name for SQL: each dotted part quoted as an identifier."""
    return ".".join(sql.Identifier(part).as_string() for part in setting.split("."))


def _createrole_why(server_version_num: int) -> str:
    if server_version_num < CREATEROLE_GRANTS_ANY_BEFORE:
        return (
            "before PostgreSQL 16 that lets it grant itself any non-superuser role, such as "
            "the owner of the tenant tables, and then turn row level security off "
            "(ALTER TABLE ... NO FORCE ROW LEVEL SECURITY)"
        )
    return (
        "it can create roles and grant itself the ones it administers; a runtime role needs neither"
    )


def runtime_role_sql(login: str, tables: list[str], schemas: list[str]) -> str:
    """SQL that creates a dedicated runtime role for an app that logs in as the superuser
    *login*, with the grants it needs on the tenant *tables* (quoted schema.name) and their
    *schemas* (quoted): advice that never takes a privilege away from anyone."""
    new = "app_runtime" if login != "app_runtime" else "app_runtime_2"
    lines = [
        f"-- the application logs in as the superuser {login!r}: give it a role of its own",
        f"CREATE ROLE {new} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;",
        f"-- then set its password (psql: \\password {new}) and use it in the app's DSN",
    ]
    if tables:
        lines.append(f"GRANT USAGE ON SCHEMA {', '.join(schemas)} TO {new};")
        lines.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(tables)} TO {new};")
        lines.append(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {', '.join(schemas)} TO {new};")
    else:
        lines.append(f"-- then GRANT {new} what the application needs on its tables")
    lines.append(
        f"-- with tenantguard: tenantguard install --app-role {new}, and "
        f"tenantguard protect TABLE... --grant-to {new}"
    )
    return "\n".join(lines)


def role_report(row: tuple[Any, ...], owner_hint: str | None = None) -> RoleReport:
    """Turn a :data:`ROLE_CHECK_QUERY` row into problems and the SQL that fixes each."""
    name, superuser, bypass, strong_roles, owned, owner_roles, defaults = row[:7]
    createrole, createrole_roles, version = row[7:10]
    problems: list[str] = []
    fixes: list[str] = []
    kinds: list[str] = []

    def add(kind: str, problem: str, fix: str) -> None:
        kinds.append(kind)
        problems.append(problem)
        fixes.append(fix)

    role = _q(name)
    if superuser:
        add(
            "superuser",
            "it is a superuser (RLS never applies to superusers): connect the application "
            "as a dedicated runtime role instead (demoting this login would lock its "
            "administrators out)",
            runtime_role_sql(name, *(row[14:16] if len(row) > 15 else ([], []))),
        )
    if bypass:
        add("bypassrls", "it has BYPASSRLS", f"ALTER ROLE {role} NOBYPASSRLS;")
    for strong in strong_roles:
        add(
            "member_of_bypass",
            f"it is a member of {strong!r}, which is superuser or BYPASSRLS",
            f"REVOKE {_q(strong)} FROM {role};",
        )
    if createrole and not superuser:
        add(
            "createrole",
            "it has CREATEROLE: " + _createrole_why(int(version)),
            f"ALTER ROLE {role} NOCREATEROLE;",
        )
    for strong in createrole_roles:
        add(
            "member_of_createrole",
            f"it is a member of {strong!r}, which has CREATEROLE: " + _createrole_why(int(version)),
            f"REVOKE {_q(strong)} FROM {role};",
        )
    for server in row[17] if len(row) > 17 else ():
        add(
            "member_of_server_access",
            (
                f"it is a member of {server!r}: it reads or writes every table past its "
                "grants, including what row level security does not cover (tenantguard's "
                "signing keys, registries and logs)"
                if server in ALL_DATA_ROLES
                else f"it is a member of {server!r}: it can run programs or read and write "
                "files on the database server as the server's operating-system user (COPY "
                "... PROGRAM, COPY ... TO 'file'), which is as good as a superuser"
            ),
            f"REVOKE {_q(server)} FROM {role};",
        )
    if len(row) > 20 and row[20]:
        add(
            "replication",
            "it has REPLICATION (or is a member of a role that has): logical decoding reads "
            "every tenant's writes, row level security does not apply to the write-ahead "
            "log, and a replication slot keeps WAL until the disk is full",
            f"ALTER ROLE {role} NOREPLICATION;  -- and on any role it is a member of",
        )
    for fn in row[18] if len(row) > 18 else ():
        add(
            "server_file_function",
            f"it can execute {fn}, which reads or writes files on the database server (the "
            "write-ahead log holds every tenant's recent rows)",
            f"REVOKE EXECUTE ON FUNCTION pg_catalog.{fn} FROM PUBLIC, {role};"
            "  -- and from any role it is a member of that was granted it",
        )
    if owned:
        shown = ", ".join(owned[:5]) + (" ..." if len(owned) > 5 else "")
        target = _q(owner_hint) if owner_hint else "<owner_role>"
        add(
            "owner",
            f"it owns tenant tables ({shown}); owners can disable RLS",
            "\n".join(f"ALTER TABLE {t} OWNER TO {target};" for t in owned),
        )
    for owner in owner_roles:
        add(
            "member_of_owner",
            f"it is a member of {owner!r}, which owns tenant tables",
            f"REVOKE {_q(owner)} FROM {role};",
        )
    for entry in defaults:
        level, setting = entry.split(":", 1)
        problem = f"a persistent {level}-level default for {setting} gives every session a tenant"
        if level == "role":
            add("setting_default", problem, f"ALTER ROLE {role} RESET {setting_ident(setting)};")
        else:
            add("setting_default", problem, f"ALTER DATABASE <db> RESET {setting_ident(setting)};")
    return RoleReport(name, problems, fixes, kinds)


def code_report(row: tuple[Any, ...]) -> RoleReport:
    """Can the role create objects whose code runs in a later lease of its connection?

    From the same :data:`ROLE_CHECK_QUERY` row. ``TEMPORARY`` on the database (granted to
    ``PUBLIC`` by default) lets any SQL on a lease create temporary functions, views and
    domains: ``pg_temp`` is searched first for relations and types, so a temporary view
    named like an application table, or a domain named like a built-in type, runs inside
    the next tenant's statements on that connection. ``CREATE`` on the database or on a
    schema lets it create persistent functions whose bodies the statement classifier
    cannot see. A runtime role needs none of these.
    """
    name = row[0]
    temp, create_db, schemas, dbname = row[10:14]
    via = list(row[16]) if len(row) > 16 else []
    role = _q(name)
    db = _q(dbname)
    problems: list[str] = []
    fixes: list[str] = []
    kinds: list[str] = []
    # Privileges it has only through a role it can SET ROLE to: revoking from the login
    # does not remove them; the membership (or the role's privilege) must go.
    through = (
        f" (also through {', '.join(repr(r) for r in via)}: a role it can SET ROLE to)"
        if via
        else ""
    )
    revoke_via = "".join(
        f"\nREVOKE {_q(r)} FROM {role};  -- or revoke the privilege from {_q(r)}" for r in via
    )
    if temp:
        kinds.append("temp")
        problems.append(
            "it can create temporary objects in this database (TEMPORARY, granted to PUBLIC "
            "by default): a temporary view, domain or function left on a pooled connection "
            "runs inside the next tenant's statements" + through
        )
        fixes.append(
            f"REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC;\n"
            f"REVOKE TEMPORARY ON DATABASE {db} FROM {role};"
            "  -- or: tenantguard install (it does this unless --allow-temp)" + revoke_via
        )
    if create_db:
        kinds.append("create_database")
        problems.append("it can create schemas in this database (CREATE on the database)" + through)
        fixes.append(f"REVOKE CREATE ON DATABASE {db} FROM PUBLIC, {role};" + revoke_via)
    for schema in schemas:
        kinds.append("create_schema")
        problems.append(
            f"it can create functions and views in schema {schema!r} (CREATE on the schema), "
            "code the statement classifier cannot see into" + through
        )
        fixes.append(f"REVOKE CREATE ON SCHEMA {_q(schema)} FROM PUBLIC, {role};" + revoke_via)
    owned = list(row[19]) if len(row) > 19 else []
    if owned:
        kinds.append("owned_objects")
        shown = ", ".join(owned[:5]) + (f" and {len(owned) - 5} more" if len(owned) > 5 else "")
        problems.append(
            f"it owns (or may add triggers to) {shown}: an owner attaches code to them with no "
            "CREATE privilege at all (a policy, a rule, a trigger, a new view or function "
            "body, a domain CHECK), and that code runs in other tenants' statements" + through
        )
        fixes.append(_hand_over(owned, role))
    return RoleReport(name, problems, fixes, kinds)


def _hand_over(owned: list[str], role: str) -> str:
    """SQL that takes the *owned* objects (code_report labels) away from the runtime role:
    what it owns goes to whoever runs the fix (the migrations' role, as a rule), what it
    reaches through a membership goes with the membership, a TRIGGER grant is revoked."""
    lines: list[str] = []
    direct = [w for w in owned if " (" not in w and not w.startswith("trigger on ")]
    if direct:
        lines.append(
            f"REASSIGN OWNED BY {role} TO CURRENT_USER;  -- it owns "
            + ", ".join(direct[:3])
            + (" ..." if len(direct) > 3 else "")
        )
    for what in owned:
        what, _, by = what.partition(" (")
        if by:  # through a role it is a member of
            holder = by.rstrip(")").split(" ", 2)[2]
            lines.append(f"REVOKE {holder} FROM {role};  -- it reaches {what} through {holder}")
        elif what.startswith("trigger on "):
            lines.append(f"REVOKE TRIGGER ON {what[len('trigger on ') :]} FROM PUBLIC, {role};")
    return "\n".join(dict.fromkeys(lines))
