"""Administrative operations that change a database: ``install`` and ``protect``.

They run as an administrator (a role that can create roles and alter tables), in a
single transaction each, using the SQL builders of :mod:`tenantguard.core.sqlbuild`.
"""

from tenantguard.admin.connect import admin_connect
from tenantguard.admin.install import InstallResult, install, signing_installed
from tenantguard.admin.keys import create_key, list_keys, retire_key, rotate_key
from tenantguard.admin.protect import ProtectResult, plan_protect, protect, runtime_grants

__all__ = [
    "InstallResult",
    "ProtectResult",
    "admin_connect",
    "create_key",
    "install",
    "list_keys",
    "plan_protect",
    "protect",
    "retire_key",
    "rotate_key",
    "runtime_grants",
    "signing_installed",
]
