"""The core: tenant ids, the tenant context, binding and SQL builders. No I/O here."""
