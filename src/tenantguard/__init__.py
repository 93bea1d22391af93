"""tenantguard."""
