"""Findings: what audit, probe and lint report. Values, not side effects.

A :class:`Rule` is the stable definition (code, kebab-case name, severity, docs);
a :class:`Finding` is one occurrence on one object. Renderers live in
:mod:`tenantguard.tooling.report`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any, Literal

__all__ = ["Finding", "Location", "Report", "Rule", "Severity", "exit_code"]

Tool = Literal["audit", "probe", "lint"]


class Severity(IntEnum):
    """How bad. High/critical: one tenant can read, change or destroy another's data,
    or SQL on the app connection can step out of isolation. Medium: needs one more
    mistake to leak. Low: performance advice."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {text!r}; use low, medium, high or critical"
            ) from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Rule:
    """A check's stable definition. ``code`` like ``TGA101``; ``name`` kebab-case."""

    code: str
    name: str
    severity: Severity
    tool: Tool
    summary: str  # one line: the message
    description: str = ""  # why it leaks
    anti_pattern: str = ""  # SQL that triggers it
    best_practice: str = ""  # SQL that does not
    # A coverage rule reports a check that could not run: its findings make the run
    # fail whatever --fail-on says (an unproven database is never reported clean).
    coverage: bool = False


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a file (lint): 1-based line and column."""

    path: str
    line: int = 1
    column: int = 1
    end_line: int | None = None
    end_column: int | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One occurrence of a rule on one object."""

    rule: Rule
    object: str  # e.g. app.invoices, policy tg_x on app.invoices, role app_user
    message: str  # what is wrong here, specifically
    fix_sql: str | None = None
    severity: Severity | None = None  # overrides rule.severity when set
    location: Location | None = None
    evidence: str | None = None  # e.g. the SQL that proved a probe leak

    @property
    def level(self) -> Severity:
        return self.severity if self.severity is not None else self.rule.severity

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.code,
            "name": self.rule.name,
            "severity": str(self.level),
            "object": self.object,
            "message": self.message,
            "why": self.rule.description,
            "fix_sql": self.fix_sql,
            "location": asdict(self.location) if self.location else None,
            "evidence": self.evidence,
        }


@dataclass
class Report:
    """The outcome of one run of a tool."""

    tool: Tool
    target: str  # DSN without password, or the paths linted
    findings: list[Finding] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)  # every rule that ran
    meta: dict[str, Any] = field(default_factory=dict)  # server version, duration, ...

    def at_or_above(self, threshold: Severity) -> list[Finding]:
        return [f for f in self.findings if f.level >= threshold]

    @property
    def not_run(self) -> list[Finding]:
        """Findings of checks that could not run (coverage rules), whatever their severity."""
        return [f for f in self.findings if f.rule.coverage]


def exit_code(report: Report, fail_on: Severity) -> int:
    """0: nothing at or above *fail_on* and every check ran; 1: findings, or a check that
    could not run (whatever its severity). (2 is for usage/connection errors.)"""
    return 1 if report.at_or_above(fail_on) or report.not_run else 0
