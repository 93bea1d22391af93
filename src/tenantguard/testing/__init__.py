"""Test support that needs nothing beyond tenantguard's core dependencies.

:mod:`tenantguard.testing.pgbouncer` runs a real PgBouncer on a loopback port and
:mod:`tenantguard.testing.rtproxy` counts network round trips. The test suite uses them,
and so does the benchmark harness (``tenantguard bench``, the ``bench`` extra).
"""
