"""``tenantguard install``: the helper schema, fail-closed helpers and roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenantguard.core.rolecheck import ROLE_CHECK_QUERY, role_params, role_report
from tenantguard.core.signed_sql import keys_schema_for, signed_install_statements
from tenantguard.core.sqlbuild import (
    InstallSpec,
    activity_statement,
    database_statements,
    install_statements,
    render,
    role_statements,
)
from tenantguard.errors import ConfigurationError, UnsafeRoleError

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


def signing_installed(conn: psycopg.Connection[Any], schema: str = "tenantguard") -> bool:
    """Is ``install --signed`` in place (the verifying view exists)?"""
    row = conn.execute(
        "SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
        (sql.Identifier(keys_schema_for(schema), "signed_context").as_string(conn),),
    ).fetchone()
    return bool(row and row[0])


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
        if not spec.signed and signing_installed(conn, spec.schema):
            # A plain install would put back helpers that trust any value of the setting.
            raise ConfigurationError(
                "this database has signed tenant contexts installed; a plain install "
                "would make the helpers trust an unsigned setting again",
                hint="run `tenantguard install ... --signed`",
            )
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
        create_key_owner = False
        if spec.signed:
            create_key_owner = not _role_exists(conn, spec.key_owner)
            if not create_key_owner:
                _refuse_unsafe_key_owner(conn, spec)
            statements += signed_install_statements(
                schema=spec.schema,
                setting=spec.setting,
                app_role=spec.app_role,
                key_owner_role=spec.key_owner,
                create_key_owner=create_key_owner,
            )
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
            r
            for r, made in (
                (spec.owner_role, create_owner),
                (spec.app_role, create_app),
                (spec.key_owner, create_key_owner),
            )
            if made
        ]
    return result


def _refuse_unsafe_key_owner(conn: psycopg.Connection[Any], spec: InstallSpec) -> None:
    """An existing key-owner role must not log in, and the app role must not be able to
    become it (membership would let the app read the key table)."""
    row = conn.execute(
        "SELECT r.rolcanlogin, pg_catalog.pg_has_role(%s, r.oid, 'MEMBER') "
        "FROM pg_catalog.pg_roles r WHERE r.rolname = %s",
        (spec.app_role, spec.key_owner),
    ).fetchone()
    if row is None:
        return
    problems, fixes = [], []
    key_owner, app = sql.Identifier(spec.key_owner), sql.Identifier(spec.app_role)
    if row[0]:
        problems.append(f"the key-owner role {spec.key_owner!r} can log in")
        fixes.append(render(sql.SQL("ALTER ROLE {} NOLOGIN;").format(key_owner)))
    if row[1]:
        problems.append(f"it is a member of the key-owner role {spec.key_owner!r}")
        fixes.append(render(sql.SQL("REVOKE {} FROM {};").format(key_owner, app)))
    if problems:
        raise UnsafeRoleError(spec.app_role, problems, fixes)
