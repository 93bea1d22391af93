"""psycopg 3 driver: tenant-bound connections and pools."""

from tenantguard.drivers.psycopg._connection import (
    AsyncTenantConnection,
    AsyncTenantCursor,
    TenantConnection,
    TenantCursor,
)
from tenantguard.drivers.psycopg._pool import AsyncTenantPool, TenantPool

__all__ = [
    "AsyncTenantConnection",
    "AsyncTenantCursor",
    "AsyncTenantPool",
    "TenantConnection",
    "TenantCursor",
    "TenantPool",
]
