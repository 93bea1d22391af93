"""The JSON report: a stable, documented schema (``tenantguard-report/1``).

::

    {
      "schema": "tenantguard-report/1",
      "tool": "audit" | "probe" | "lint",
      "target": "...",            # DSN without password, or the paths linted
      "meta": {...},              # server version, runtime role, setting, duration...
      "summary": {"total": n, "critical": n, "high": n, "medium": n, "low": n},
      "scope": "...",             # what the run looked at: tables, rules, probe attempts
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


def scope(report: Report) -> str:
    """What a run looked at, so that a clean result says what it is clean *of*."""
    m = report.meta
    rules = f"{len(report.rules)} rule(s)"
    if report.tool == "lint":
        tables = len(m.get("tenant_keys") or {})
        return (
            f"{m.get('files', 0)} file(s), {m.get('statements', 0)} statement(s), "
            f"{tables} tenant table(s), {rules}"
        )
    if report.tool == "probe":
        parts = [
            f"{m.get('tables_probed', 0)} table(s) probed",
            f"{m.get('attempts', 0)} attack attempt(s)",
        ]
        if m.get("tables_not_probed"):
            parts.append(f"{m['tables_not_probed']} table(s) not probed")
        if m.get("tables_unreachable"):
            parts.append(
                f"{len(m['tables_unreachable'])} table(s) the runtime role cannot reach "
                "(not probed)"
            )
        return ", ".join(parts)
    tables = m.get("tenant_tables", 0) + m.get("foreign_tenant_tables", 0)
    return f"{tables} tenant table(s), {rules}"


def to_dict(report: Report) -> dict[str, Any]:
    findings = sorted(report.findings, key=lambda f: (-f.level, f.rule.code, f.object))
    return {
        "schema": SCHEMA,
        "tool": report.tool,
        "target": report.target,
        "meta": report.meta,
        "summary": summary(report),
        "scope": scope(report),
        "rules": [
            {"code": r.code, "name": r.name, "severity": str(r.severity), "summary": r.summary}
            for r in sorted(report.rules, key=lambda r: r.code)
        ],
        "findings": [f.as_dict() for f in findings],
    }


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, default=str)
