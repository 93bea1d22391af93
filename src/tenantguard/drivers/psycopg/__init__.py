"""psycopg 3 driver: tenant-bound connections and pools, and per-tenant login pools."""

from tenantguard.drivers.psycopg._connection import TenantConnection, TenantCursor
from tenantguard.drivers.psycopg._connection_async import (
    AsyncTenantConnection,
    AsyncTenantCursor,
)
from tenantguard.drivers.psycopg._credential_pool import CredentialPool
from tenantguard.drivers.psycopg._credential_pool_async import AsyncCredentialPool
from tenantguard.drivers.psycopg._credential_pool_base import (
    AdminCredentialSource,
    AsyncCredentialSource,
    CredentialSource,
)
from tenantguard.drivers.psycopg._internals import FAST as _FAST
from tenantguard.drivers.psycopg._internals import REASON as _REASON
from tenantguard.drivers.psycopg._pool import TenantPool
from tenantguard.drivers.psycopg._pool_async import AsyncTenantPool


def fast_path() -> tuple[bool, str]:
    """(enabled, why not): whether the lean request path over psycopg's internals is on.

    Off on psycopg series it was not tested with, when an internal it needs is missing,
    or with ``TENANTGUARD_FAST_PATH=0``; the public-API path sends the same messages.
    """
    return _FAST, _REASON


__all__ = [
    "AdminCredentialSource",
    "AsyncCredentialPool",
    "AsyncCredentialSource",
    "AsyncTenantConnection",
    "AsyncTenantCursor",
    "AsyncTenantPool",
    "CredentialPool",
    "CredentialSource",
    "TenantConnection",
    "TenantCursor",
    "TenantPool",
    "fast_path",
]
