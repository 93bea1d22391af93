"""Probe attacks: one module per attack, each with ``RULE`` and a ``run(tp)`` registered
with :data:`REGISTRY` (see :mod:`tenantguard.tooling.registry`).

``run`` receives a :class:`~tenantguard.tooling.probe._target.TableProbe` (tenant A
attacking tenant B on one table) and yields a finding for every attempt that got
through. Attempts that could not be made (no valid row, a missing privilege) are
recorded with :meth:`TableProbe.note`, never reported as safe or as leaks.
"""

from __future__ import annotations

from tenantguard.tooling.findings import Rule
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.registry import Registry

__all__ = ["REGISTRY", "RULES"]

REGISTRY: Registry[TableProbe] = Registry("probe", __name__, "tgp")

RULES: list[Rule] = REGISTRY.rules()
