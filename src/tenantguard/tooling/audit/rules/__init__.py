"""Audit rules: one module per rule, each with ``RULE`` and ``check(ctx)``."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from types import ModuleType

from tenantguard.tooling.findings import Finding, Rule

__all__ = ["RULES", "all_rules"]


def _modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"{__name__}.{m.name}")
        for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
        if m.name.startswith("tga")
    ]


def all_rules() -> list[tuple[Rule, Callable[..., Iterable[Finding]]]]:
    return [(m.RULE, m.check) for m in _modules()]


RULES: list[Rule] = [r for r, _ in all_rules()]
