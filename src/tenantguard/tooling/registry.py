"""One rule protocol and one registration mechanism for audit rules, lint rules and probe attacks.

A rule is a module of its tool's rule package (``audit/rules/tga*.py``, ``lint/rules/tgl*.py``,
``probe/attacks/tgp*.py``) that defines its :class:`~tenantguard.tooling.findings.Rule` and
registers its check with the package's :class:`Registry`::

    from tenantguard.tooling.audit.rules import REGISTRY

    RULE = Rule(code="TGA199", ...)

    @REGISTRY.register(RULE)
    def check(ctx: AuditContext) -> Iterator[Finding]: ...

The tool runs what the registry holds (:meth:`Registry.checks`), in module name order;
:meth:`Registry.unregistered` names the rules and check functions a rule module defines
but did not register (a test keeps that list empty).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Generic, Protocol, TypeVar

from tenantguard.tooling.findings import Finding, Rule, Severity, Tool

__all__ = ["CHECK_NAMES", "CheckFn", "Registered", "Registry", "RuleCheck"]

Ctx = TypeVar("Ctx")
Ctx_contra = TypeVar("Ctx_contra", contravariant=True)

CheckFn = Callable[[Ctx], Iterable[Finding]]

# What a rule module's check function is called (audit and lint: check; probe: run).
CHECK_NAMES = frozenset({"check", "run"})


class RuleCheck(Protocol[Ctx_contra]):
    """What every tool runs: a rule's id, severity and title, and its check."""

    @property
    def id(self) -> str: ...

    @property
    def severity(self) -> Severity: ...

    @property
    def title(self) -> str: ...

    @property
    def rule(self) -> Rule: ...

    def check(self, ctx: Ctx_contra) -> Iterable[Finding]: ...


@dataclass(frozen=True)
class Registered(Generic[Ctx]):
    """A rule and the function that checks it (a :class:`RuleCheck`)."""

    rule: Rule
    fn: CheckFn[Ctx]
    on: str = ""  # what it runs on, for a tool with more than one kind of target (probe: "view")

    @property
    def id(self) -> str:
        return self.rule.code

    @property
    def severity(self) -> Severity:
        return self.rule.severity

    @property
    def title(self) -> str:
        return self.rule.summary

    @property
    def module(self) -> str:
        return self.fn.__module__

    def check(self, ctx: Ctx) -> Iterable[Finding]:
        return self.fn(ctx)


class Registry(Generic[Ctx]):
    """The checks of one tool: those its rule package's modules (named *prefix*...) register."""

    def __init__(self, tool: Tool, package: str, prefix: str) -> None:
        self.tool = tool
        self.package = package
        self.prefix = prefix
        self._entries: dict[str, Registered[Ctx]] = {}

    def register(self, rule: Rule, *, on: str = "") -> Callable[[CheckFn[Ctx]], CheckFn[Ctx]]:
        """Decorator: *rule* is checked by the decorated function; *on* names what it runs
        on where a tool has more than one kind of target (the probe's tables and views)."""

        def add(fn: CheckFn[Ctx]) -> CheckFn[Ctx]:
            if rule.tool != self.tool:
                raise ValueError(f"{rule.code} is a {rule.tool} rule, not a {self.tool} rule")
            if not rule.code.lower().startswith(self.prefix):
                raise ValueError(f"{rule.code}: a {self.tool} rule's code starts {self.prefix!r}")
            known = self._entries.get(rule.code)
            if known is not None and known.module != fn.__module__:
                raise ValueError(
                    f"{rule.code} is registered twice ({known.module}, {fn.__module__})"
                )
            self._entries[rule.code] = Registered(rule, fn, on)
            return fn

        return add

    def modules(self) -> list[ModuleType]:
        """Every rule module of the package (imported, so that it registers), by name."""
        pkg = importlib.import_module(self.package)
        return [
            importlib.import_module(f"{self.package}.{m.name}")
            for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name)
            if m.name.startswith(self.prefix)
        ]

    def checks(self, on: str | None = None) -> list[Registered[Ctx]]:
        """What the tool runs: every registered check (or those that run *on* that kind of
        target), in module name order."""
        self.modules()
        found = sorted(self._entries.values(), key=lambda r: (r.module, r.id))
        return found if on is None else [r for r in found if r.on == on]

    def rules(self) -> list[Rule]:
        return [r.rule for r in self.checks()]

    def unregistered(self) -> list[str]:
        """What the rule modules define but did not register: a :class:`Rule` of the
        module's own code, a check function (:data:`CHECK_NAMES`), or nothing at all."""
        problems: list[str] = []
        entries = self.checks()
        for mod in self.modules():
            mine = [r for r in entries if r.module == mod.__name__]
            own = mod.__name__.rsplit(".", 1)[1].split("_", 1)[0].upper()  # tga101_x: TGA101
            if not mine:
                problems.append(f"{mod.__name__} registers no check")
            registered_rules = {id(r.rule) for r in mine}
            registered_fns = {id(r.fn) for r in mine}
            for name, value in vars(mod).items():
                if (
                    isinstance(value, Rule)
                    and value.code == own
                    and id(value) not in registered_rules
                ):
                    problems.append(f"{mod.__name__}.{name} ({value.code}) is not registered")
                elif (
                    name in CHECK_NAMES
                    and callable(value)
                    and getattr(value, "__module__", None) == mod.__name__
                    and id(value) not in registered_fns
                ):
                    problems.append(f"{mod.__name__}.{name}() is not registered")
        return problems
