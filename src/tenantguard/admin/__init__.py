"""Administrative operations that change a database: ``install``, ``protect``, per-tenant
logins (:mod:`~tenantguard.admin.credentials`) and break-glass grants
(:mod:`~tenantguard.admin.breakglass`).

They run as an administrator (a role that can create roles and alter tables), in a
single transaction each, using the SQL builders of :mod:`tenantguard.core.sqlbuild`.
"""

from tenantguard.admin.breakglass import grant_access, read_log, revoke_access, verify_log
from tenantguard.admin.connect import admin_connect
from tenantguard.admin.credentials import (
    issue_credential,
    list_credentials,
    revoke_credentials,
    sweep_credentials,
)
from tenantguard.admin.install import InstallResult, install, signing_installed
from tenantguard.admin.keys import create_key, list_keys, retire_key, rotate_key
from tenantguard.admin.protect import ProtectResult, plan_protect, protect, runtime_grants

__all__ = [
    "InstallResult",
    "ProtectResult",
    "admin_connect",
    "create_key",
    "grant_access",
    "install",
    "issue_credential",
    "list_credentials",
    "list_keys",
    "plan_protect",
    "protect",
    "read_log",
    "retire_key",
    "revoke_access",
    "revoke_credentials",
    "rotate_key",
    "runtime_grants",
    "signing_installed",
    "sweep_credentials",
    "verify_log",
]
