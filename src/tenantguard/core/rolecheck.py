"""Is a runtime role able to step around row-level security?

One catalog query, shared by ``install`` (checking the app role by name), the pools
(checking ``current_user`` at start and on every new connection) and the audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, LiteralString

from psycopg import sql

__all__ = ["ROLE_CHECK_QUERY", "RoleReport", "role_report"]

# Parameters: role (NULL = current_user), tenant_column, tenant setting, user setting.
ROLE_CHECK_QUERY: LiteralString = """
WITH target AS (
    SELECT r.oid, r.rolname, r.rolsuper, r.rolbypassrls
    FROM pg_catalog.pg_roles r
    WHERE r.rolname = coalesce(%(role)s, current_user)
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
          ORDER BY 1)
FROM target t
"""


@dataclass(frozen=True, slots=True)
class RoleReport:
    role: str
    problems: list[str]
    fixes: list[str]

    @property
    def safe(self) -> bool:
        return not self.problems


def role_params(role: str | None, column: str, setting: str, user_setting: str) -> dict[str, Any]:
    return {"role": role, "column": column, "setting": setting, "user_setting": user_setting}


def _q(name: str) -> str:
    return sql.Identifier(name).as_string()


def role_report(row: tuple[Any, ...], owner_hint: str | None = None) -> RoleReport:
    """Turn a :data:`ROLE_CHECK_QUERY` row into problems and the SQL that fixes each."""
    name, superuser, bypass, strong_roles, owned, owner_roles, defaults = row
    problems: list[str] = []
    fixes: list[str] = []
    role = _q(name)
    if superuser:
        problems.append("it is a superuser (RLS never applies to superusers)")
        fixes.append(f"ALTER ROLE {role} NOSUPERUSER;")
    if bypass:
        problems.append("it has BYPASSRLS")
        fixes.append(f"ALTER ROLE {role} NOBYPASSRLS;")
    for strong in strong_roles:
        problems.append(f"it is a member of {strong!r}, which is superuser or BYPASSRLS")
        fixes.append(f"REVOKE {_q(strong)} FROM {role};")
    if owned:
        shown = ", ".join(owned[:5]) + (" ..." if len(owned) > 5 else "")
        problems.append(f"it owns tenant tables ({shown}); owners can disable RLS")
        target = _q(owner_hint) if owner_hint else "<owner_role>"
        fixes.extend(f"ALTER TABLE {t} OWNER TO {target};" for t in owned)
    for owner in owner_roles:
        problems.append(f"it is a member of {owner!r}, which owns tenant tables")
        fixes.append(f"REVOKE {_q(owner)} FROM {role};")
    for entry in defaults:
        level, setting = entry.split(":", 1)
        problems.append(
            f"a persistent {level}-level default for {setting} gives every session a tenant"
        )
        if level == "role":
            fixes.append(f"ALTER ROLE {role} RESET {setting};")
        else:
            fixes.append(f"ALTER DATABASE <db> RESET {setting};")
    return RoleReport(name, problems, fixes)
