"""Audit rules: one module per rule (``tga1xx_*.py``) with ``RULE`` and a ``check(ctx)``
registered with :data:`REGISTRY` (see :mod:`tenantguard.tooling.registry`)."""

from __future__ import annotations

from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Rule
from tenantguard.tooling.registry import Registry

__all__ = ["REGISTRY", "RULES"]

REGISTRY: Registry[AuditContext] = Registry("audit", __name__, "tga")

RULES: list[Rule] = REGISTRY.rules()
