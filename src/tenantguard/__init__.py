"""tenantguard: tenant isolation in PostgreSQL as a database guarantee.

The request path::

    from tenantguard import TenantPool, tenant

    pool = TenantPool("postgresql://app_user@127.0.0.1/db", max_size=10)
    with tenant(42):
        with pool.connection() as conn:
            conn.execute("SELECT * FROM app.invoices").fetchall()  # tenant 42's rows only
"""

from tenantguard.admin.credentials import Credential
from tenantguard.core.binding import Binder, SettingBinder
from tenantguard.core.context import TenantContext, current_tenant, reset_tenant, set_tenant, tenant
from tenantguard.core.ids import TenantId, parse_tenant_id
from tenantguard.drivers.psycopg import (
    AdminCredentialSource,
    AsyncCredentialPool,
    AsyncTenantPool,
    CredentialPool,
    TenantPool,
)
from tenantguard.errors import (
    ConfigurationError,
    InvalidTenantId,
    IsolationError,
    NoTenantContext,
    TenantGuardError,
    UnsafeRoleError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "AdminCredentialSource",
    "AsyncCredentialPool",
    "AsyncTenantPool",
    "Binder",
    "ConfigurationError",
    "Credential",
    "CredentialPool",
    "InvalidTenantId",
    "IsolationError",
    "NoTenantContext",
    "SettingBinder",
    "TenantContext",
    "TenantGuardError",
    "TenantId",
    "TenantPool",
    "UnsafeRoleError",
    "UsageError",
    "current_tenant",
    "parse_tenant_id",
    "reset_tenant",
    "set_tenant",
    "tenant",
]
