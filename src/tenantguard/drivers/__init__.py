"""Thin I/O layers over database drivers; the logic lives in tenantguard.core."""
