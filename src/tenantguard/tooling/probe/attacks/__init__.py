"""Probe attacks: one module per attack, each with ``RULE`` and ``run(tp)``.

``run`` receives a :class:`~tenantguard.tooling.probe._target.TableProbe` (tenant A
attacking tenant B on one table) and yields a finding for every attempt that got
through. Attempts that could not be made (no valid row, a missing privilege) are
recorded with :meth:`TableProbe.note`, never reported as safe or as leaks.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from types import ModuleType

from tenantguard.tooling.findings import Finding, Rule

__all__ = ["RULES", "all_attacks"]


def _modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"{__name__}.{m.name}")
        for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
        if m.name.startswith("tgp")
    ]


def all_attacks() -> list[tuple[Rule, Callable[..., Iterable[Finding]]]]:
    return [(m.RULE, m.run) for m in _modules()]


RULES: list[Rule] = [r for r, _ in all_attacks()]
