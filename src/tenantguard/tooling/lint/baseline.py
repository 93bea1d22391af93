"""Lint baselines: record today's findings once, report only new ones afterwards.

A project with years of migrations adopts ``lint`` in CI without rewriting history::

    tenantguard lint migrations/ --write-baseline tenantguard-baseline.json   # once, commit it
    tenantguard lint migrations/ --baseline tenantguard-baseline.json         # in CI

A finding is matched by a fingerprint of its rule, file, object, message and the
statement it is on, written back from PostgreSQL's parse tree (so whitespace, comments and
line numbers do not matter: adding a migration above, or a comment, keeps the match;
changing the statement does not). Identical findings are counted, not merged. Baseline
entries that match nothing any more are reported (TGL195), so a fixed finding is noticed
and the file shrinks. What the linter could not check is never baselined: a file it cannot
parse (TGL100), a table whose tenant key is ambiguous (TGL196), SQL built at run time
(TGL197) and suppression hygiene (TGL198/199) are reported on every run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenantguard.errors import UsageError
from tenantguard.tooling.findings import Finding, Location

__all__ = ["NEVER_BASELINED", "Baseline", "fingerprint"]

SCHEMA = "tenantguard-lint-baseline/1"
NEVER_BASELINED = frozenset({"TGL100", "TGL195", "TGL196", "TGL197", "TGL198", "TGL199"})


def _portable(path: str) -> str:
    """The path as recorded: relative to the working directory when under it, with ``/``."""
    p = Path(path)
    if p.is_absolute():
        with contextlib.suppress(ValueError):
            p = p.relative_to(Path.cwd())
    return p.as_posix()


def fingerprint(f: Finding, anchors: Mapping[tuple[str, int], str]) -> str:
    """Stable identity of *f*: survives line shifts, changes when its statement changes."""
    loc = f.location
    anchor = anchors.get((loc.path, loc.line), "") if loc else ""
    path = _portable(loc.path) if loc else ""
    text = "\x1f".join((f.rule.code, path, f.object, f.message, anchor))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Baseline:
    """Recorded findings (``fingerprint -> entries``) read from, or written to, *path*."""

    path: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    matched: int = 0

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(
                f"baseline file {path} does not exist",
                hint="record one first: tenantguard lint PATHS --write-baseline FILE",
            ) from None
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"cannot read baseline file {path}: {exc}",
                hint="rewrite it with --write-baseline FILE",
            ) from None
        entries = data.get("findings") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or data.get("schema") != SCHEMA
            or not isinstance(entries, list)
            or not all(
                isinstance(e, dict) and isinstance(e.get("fingerprint"), str) for e in entries
            )
        ):
            raise UsageError(
                f"{path} is not a tenantguard lint baseline ({SCHEMA})",
                hint="rewrite it with --write-baseline FILE",
            )
        return cls(str(path), entries)

    @classmethod
    def record(
        cls,
        path: str | Path,
        findings: list[Finding],
        anchors: Mapping[tuple[str, int], str],
    ) -> Baseline:
        """Write the baseline-able *findings* to *path* and return that baseline."""
        entries = [
            {
                "fingerprint": fingerprint(f, anchors),
                "rule": f.rule.code,
                "severity": str(f.level),
                "object": f.object,
                "message": f.message,
                "path": _portable(f.location.path) if f.location else None,
                "line": f.location.line if f.location else None,
            }
            for f in findings
            if f.rule.code not in NEVER_BASELINED
        ]
        entries.sort(key=lambda e: (e["path"] or "", e["line"] or 0, e["rule"], e["object"]))
        payload = {
            "schema": SCHEMA,
            "about": "findings accepted when lint was adopted; tenantguard lint --baseline "
            "reports only findings not listed here. Line numbers are informative only.",
            "findings": entries,
        }
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return cls(str(path), entries)

    def apply(
        self, findings: list[Finding], anchors: Mapping[tuple[str, int], str]
    ) -> tuple[list[Finding], list[Finding]]:
        """(the findings the baseline does not record, TGL195 for each stale entry)."""
        from tenantguard.tooling.lint.rules import META

        left = Counter(e["fingerprint"] for e in self.entries)
        kept: list[Finding] = []
        for f in findings:
            fp = fingerprint(f, anchors)
            if f.rule.code not in NEVER_BASELINED and left[fp] > 0:
                left[fp] -= 1
                self.matched += 1
            else:
                kept.append(f)
        stale: list[Finding] = []
        for e in self.entries:
            if left[e["fingerprint"]] > 0:
                left[e["fingerprint"]] -= 1
                path, line = e.get("path"), e.get("line")
                where = f" (recorded at {path}:{line})" if path else ""
                stale.append(
                    Finding(
                        META["TGL195"],
                        str(e.get("object", "?")),
                        f"baseline entry for {e.get('rule', '?')} matches no finding any more"
                        f"{where}: {e.get('message', '')}",
                        fix_sql=f"-- rewrite the baseline: tenantguard lint ... "
                        f"--write-baseline {self.path}",
                        location=Location(str(path), int(line)) if path and line else None,
                    )
                )
        return kept, stale
