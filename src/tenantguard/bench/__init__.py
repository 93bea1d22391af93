"""Benchmarks: the cost of isolation, measured side by side (``tenantguard bench``)."""
