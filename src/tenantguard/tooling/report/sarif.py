"""SARIF 2.1.0 for code-scanning UIs: one run, rules with help, results with locations.

Lint findings carry a physical location (file, line, column); database findings a
logical location (the object's name).
"""

from __future__ import annotations

import json
from typing import Any

from tenantguard import __version__
from tenantguard.tooling.findings import Finding, Report, Severity

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
}


def _location(f: Finding) -> dict[str, Any]:
    if f.location is not None:
        region: dict[str, Any] = {"startLine": f.location.line, "startColumn": f.location.column}
        if f.location.end_line:
            region["endLine"] = f.location.end_line
        return {
            "physicalLocation": {
                "artifactLocation": {"uri": f.location.path},
                "region": region,
            }
        }
    return {"logicalLocations": [{"fullyQualifiedName": f.object, "kind": "object"}]}


def to_sarif_dict(report: Report) -> dict[str, Any]:
    rules = sorted({f.rule for f in report.findings} | set(report.rules), key=lambda r: r.code)
    index = {r.code: i for i, r in enumerate(rules)}
    results = []
    for f in sorted(report.findings, key=lambda f: (-f.level, f.rule.code, f.object)):
        text = f"{f.object}: {f.message}"
        if f.fix_sql:
            text += f" Fix: {f.fix_sql}"
        res: dict[str, Any] = {
            "ruleId": f.rule.code,
            "ruleIndex": index[f.rule.code],
            "level": _LEVEL[f.level],
            "message": {"text": text},
            "locations": [_location(f)],
            "properties": {"severity": str(f.level), "object": f.object},
        }
        if f.evidence:
            res["properties"]["evidence"] = f.evidence
        results.append(res)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tenantguard",
                        "version": __version__,
                        "informationUri": "https://github.com/tenantguard/tenantguard",
                        "rules": [
                            {
                                "id": r.code,
                                "name": r.name,
                                "shortDescription": {"text": r.summary},
                                "fullDescription": {"text": r.description or r.summary},
                                "help": {
                                    "text": (r.description or r.summary)
                                    + (
                                        f"\n\nBest practice:\n{r.best_practice}"
                                        if r.best_practice
                                        else ""
                                    )
                                },
                                "defaultConfiguration": {"level": _LEVEL[r.severity]},
                                "properties": {"severity": str(r.severity), "tool": r.tool},
                            }
                            for r in rules
                        ],
                    }
                },
                "results": results,
                "properties": {"tool": report.tool, "target": report.target},
            }
        ],
    }


def to_sarif(report: Report) -> str:
    return json.dumps(to_sarif_dict(report), indent=2, default=str)
