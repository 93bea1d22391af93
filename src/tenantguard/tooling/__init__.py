"""Proof tooling: audit (live database), probe (generated attacks), lint (migrations).

Checks produce :class:`~tenantguard.tooling.findings.Finding` values; renderers
(human, JSON, SARIF, HTML) are separate from the checks.
"""
