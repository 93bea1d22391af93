"""The JSON report: a stable, documented schema (``tenantguard-report/1``).

::

    {
      "schema": "tenantguard-report/1",
      "tool": "audit" | "probe" | "lint",
      "target": "...",            # DSN without password, or the paths linted
      "meta": {...},              # server version, runtime role, setting, duration...
      "summary": {"total": n, "critical": n, "high": n, "medium": n, "low": n},
      "rules": [{"code", "name", "severity", "summary"}...],   # every rule that ran
      "findings": [{"rule", "name", "severity", "object", "message", "why",
                    "fix_sql", "location", "evidence"}...]
    }

Fields are only ever added within schema version 1.
"""

from __future__ import annotations

import json
from typing import Any

from tenantguard.tooling.findings import Report, Severity

SCHEMA = "tenantguard-report/1"


def summary(report: Report) -> dict[str, int]:
    out = {"total": len(report.findings)}
    for sev in sorted(Severity, reverse=True):
        out[str(sev)] = sum(1 for f in report.findings if f.level == sev)
    return out


def to_dict(report: Report) -> dict[str, Any]:
    findings = sorted(report.findings, key=lambda f: (-f.level, f.rule.code, f.object))
    return {
        "schema": SCHEMA,
        "tool": report.tool,
        "target": report.target,
        "meta": report.meta,
        "summary": summary(report),
        "rules": [
            {"code": r.code, "name": r.name, "severity": str(r.severity), "summary": r.summary}
            for r in sorted(report.rules, key=lambda r: r.code)
        ],
        "findings": [f.as_dict() for f in findings],
    }


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, default=str)
