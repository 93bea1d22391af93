"""``tenantguard install``: the helper schema, fail-closed helpers and roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.core.rolecheck import ROLE_CHECK_QUERY, role_params, role_report
from tenantguard.core.sqlbuild import (
    InstallSpec,
    activity_statement,
    database_statements,
    install_statements,
    render,
    role_statements,
)
from tenantguard.errors import UnsafeRoleError

__all__ = ["InstallResult", "install"]


@dataclass
class InstallResult:
    statements: list[str] = field(default_factory=list)
    created_roles: list[str] = field(default_factory=list)
    dry_run: bool = False
    #: What could not be done, and why (the install still succeeded).
    notes: list[str] = field(default_factory=list)


def _role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)).fetchone()
    return row is not None


def install(
    conn: psycopg.Connection[Any],
    spec: InstallSpec,
    *,
    tenant_column: str = "tenant_id",
    dry_run: bool = False,
) -> InstallResult:
    """Create what the policies need, in one transaction. Idempotent.

    Refuses (raising :class:`UnsafeRoleError`, changing nothing) when the app role
    exists and can bypass RLS: superuser, BYPASSRLS, owner of tenant tables, member
    of the owner role, or a persistent default for the tenant setting.

    Unless ``spec.allow_temp``, also revokes ``TEMPORARY`` on the database from
    ``PUBLIC`` and the app role (see :func:`~tenantguard.core.sqlbuild.database_statements`);
    that needs the database's owner (or a superuser).
    """
    result = InstallResult(dry_run=dry_run)
    with conn.transaction(force_rollback=dry_run):
        create_owner = not _role_exists(conn, spec.owner_role)
        create_app = not _role_exists(conn, spec.app_role)
        if not create_app:
            row = conn.execute(
                ROLE_CHECK_QUERY,
                role_params(spec.app_role, tenant_column, spec.setting, spec.user_setting),
            ).fetchone()
            assert row is not None
            report = role_report(row, owner_hint=spec.owner_role)
            problems, fixes = list(report.problems), list(report.fixes)
            member = None
            if not create_owner:
                member = conn.execute(
                    "SELECT pg_catalog.pg_has_role(%s, %s, 'MEMBER')",
                    (spec.app_role, spec.owner_role),
                ).fetchone()
            if member and member[0]:
                problems.append(f"it is a member of the owner role {spec.owner_role!r}")
                fixes.append(
                    render(
                        sql.SQL("REVOKE {} FROM {};").format(
                            sql.Identifier(spec.owner_role), sql.Identifier(spec.app_role)
                        )
                    )
                )
            if problems:
                raise UnsafeRoleError(spec.app_role, problems, fixes)
        statements = role_statements(spec, create_owner=create_owner, create_app=create_app)
        statements += install_statements(spec)
        statements += database_statements(spec, conn.info.dbname)
        for stmt in statements:
            result.statements.append(render(stmt) + ";")
            conn.execute(stmt)
        activity = activity_statement(spec)
        if activity is not None:
            try:
                with conn.transaction():  # a savepoint: the install goes on without it
                    conn.execute(activity)
                result.statements.append(render(activity) + ";")
            except psycopg.errors.InsufficientPrivilege:
                result.notes.append(
                    "track_activities stays on for the app role (setting it needs a superuser "
                    "or GRANT SET ON PARAMETER track_activities): its sessions can read each "
                    "other's current statements in pg_stat_activity (audit rule TGA181)"
                )
        result.created_roles = [
            r for r, made in ((spec.owner_role, create_owner), (spec.app_role, create_app)) if made
        ]
    return result
