"""The tools must not become a way up: code that others wrote, run in their session.

The probe's attacks (and the audit's live checks without ``--app-dsn``) run on the
administrator's connection after ``SET LOCAL ROLE`` to the runtime role. SECURITY INVOKER code that fires there (a trigger function, a function a policy, a
rule, a default or a check constraint calls) runs as the runtime role, but in a session
whose *session user* is the administrator: it can ``RESET ROLE`` and act with the
administrator's privileges (write files with ``COPY TO`` as a superuser), and a rollback
does not undo what it did outside the database. SECURITY DEFINER code cannot (PostgreSQL
refuses ``SET ROLE`` inside it).

So before a table is attacked, the probe lists the invoker functions that may run while
it is (on the table, on the tables its foreign keys link it to, on the views over it) and
refuses the table when one is owned by a role that does not already hold the
administrator's privileges: a superuser owner, the administrator itself or a role that
inherits from it are fine (a login that is merely a *member* of the owner is not: it may
hold more than the owner does), and so are tenantguard's own helpers while their bodies are exactly
what ``tenantguard install`` wrote. Limits: a function those functions call in turn is not
followed (its caller's owner chose to call it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.core.signed_sql import keys_schema_for
from tenantguard.core.sqlbuild import helper_sources, signed_reader

__all__ = ["foreign_code"]

_MAY_RUN = """
WITH RECURSIVE base AS (
    SELECT unnest(%(oids)s::oid[]) AS oid
    UNION SELECT con.conrelid FROM pg_catalog.pg_constraint con
          WHERE con.contype = 'f' AND con.confrelid = ANY(%(oids)s::oid[]) AND NOT %(reads_only)s
    UNION SELECT con.confrelid FROM pg_catalog.pg_constraint con
          WHERE con.contype = 'f' AND con.conrelid = ANY(%(oids)s::oid[]) AND NOT %(reads_only)s
    UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = ANY(%(oids)s::oid[])
),
rels(oid) AS (
    SELECT oid FROM base
    UNION  -- views (and views over views) that read these tables
    SELECT r.ev_class FROM pg_catalog.pg_rewrite r
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
         AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
    JOIN rels ON d.refobjid = rels.oid
    WHERE r.ev_class <> rels.oid AND NOT %(reads_only)s
),
fns(oid, why) AS (
    SELECT tg.tgfoid, 'trigger ' || quote_ident(tg.tgname) || ' on ' || tg.tgrelid::regclass::text
    FROM pg_catalog.pg_trigger tg WHERE NOT tg.tgisinternal AND tg.tgrelid IN (SELECT oid FROM rels)
    UNION
    SELECT d.refobjid, CASE d.classid
        WHEN 'pg_catalog.pg_policy'::regclass THEN 'a policy'
        WHEN 'pg_catalog.pg_rewrite'::regclass THEN 'a rule or view'
        WHEN 'pg_catalog.pg_attrdef'::regclass THEN 'a column default'
        ELSE 'a constraint' END
    FROM pg_catalog.pg_depend d
    WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass AND (
        (d.classid = 'pg_catalog.pg_policy'::regclass AND d.objid IN
            (SELECT oid FROM pg_catalog.pg_policy WHERE polrelid IN (SELECT oid FROM rels)))
        OR (d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid IN
            (SELECT oid FROM pg_catalog.pg_rewrite WHERE ev_class IN (SELECT oid FROM rels)))
        OR (d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid IN
            (SELECT oid FROM pg_catalog.pg_attrdef WHERE adrelid IN (SELECT oid FROM rels)))
        OR (d.classid = 'pg_catalog.pg_constraint'::regclass AND d.objid IN
            (SELECT oid FROM pg_catalog.pg_constraint WHERE conrelid IN (SELECT oid FROM rels))))
)
SELECT DISTINCT ON (p.oid) p.oid::regprocedure::text, o.rolname::text, fns.why,
       n.nspname::text, p.proname::text, p.prosrc
FROM fns
JOIN pg_catalog.pg_proc p ON p.oid = fns.oid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_roles o ON o.oid = p.proowner
WHERE NOT p.prosecdef
  AND n.nspname <> 'pg_catalog'
  AND NOT o.rolsuper
  AND NOT pg_catalog.pg_has_role(o.oid, session_user, 'USAGE')
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                  WHERE e.classid = 'pg_catalog.pg_proc'::regclass AND e.objid = p.oid
                    AND e.deptype = 'e')
ORDER BY p.oid, 3
"""


def foreign_code(
    conn: psycopg.Connection[Any],
    table_oid: int,
    setting: str,
    user_setting: str,
    *,
    reads: Sequence[int] = (),
) -> list[tuple[str, str, str]]:
    """(function, owner, where it fires) for invoker code owned by a role without the
    session user's privileges that may run while *table_oid* is probed. With *reads* (a
    view read on its own: every relation under it), what reading the view may run: the
    view's and those relations' rules, policies, defaults and constraints."""
    trusted = helper_sources("tenantguard", setting, user_setting)
    keys = keys_schema_for("tenantguard")
    signed = {  # install --signed replaces the readers by verifying ones
        "current_tenant": sql.SQL("SELECT {}").format(signed_reader(keys, "tenant")),
        "current_user_id": sql.SQL("SELECT {}").format(signed_reader(keys, "user")),
    }
    out: list[tuple[str, str, str]] = []
    for signature, owner, why, schema, name, source in conn.execute(
        _MAY_RUN, {"oids": [table_oid, *reads], "reads_only": bool(reads)}
    ).fetchall():
        if schema == "tenantguard" and (
            trusted.get(name) == source
            or (name in signed and signed[name].as_string(conn) == source)
        ):
            continue  # tenantguard's own helper, as install (or install --signed) wrote it
        out.append((signature, owner, why))
    return out
