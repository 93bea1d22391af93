"""Every fix the probe prints runs as pasted, and re-running the probe finds nothing.

For each leaky fixture: probe, run each finding's ``fix_sql`` as the admin, probe again:
no finding is left but those whose fix is a decision for a person (only comments, saying
that no SQL fix is printed and what to do instead).
"""

from __future__ import annotations

import pytest

from probe.test_probe import CASES, CASES_DIR, prepare_case, probe_case


def _runnable(fix: str) -> bool:
    """A fix with at least one statement (not only comments)."""
    return any(line.strip() and not line.strip().startswith("--") for line in fix.splitlines())


@pytest.mark.parametrize("case", CASES)
def test_every_probe_fix_runs_and_clears_its_finding(fresh, case: str) -> None:  # type: ignore[no-untyped-def]
    text = (CASES_DIR / case / "leaky.sql").read_text()
    with fresh.admin() as conn:
        prepare_case(conn, fresh, text)
        before = probe_case(conn, fresh, text).findings
        assert before, f"{case}: the leaky fixture leaks nothing"
        applied = set()
        for f in before:
            if not (f.fix_sql and _runnable(f.fix_sql)) or f.fix_sql in applied:
                continue  # the same fix for several findings runs once
            try:
                conn.execute(f.fix_sql)
            except Exception as exc:  # the fix did not run as pasted
                pytest.fail(f"{f.rule.code} fix for {f.object} failed: {exc}\n{f.fix_sql}")
            applied.add(f.fix_sql)
        after = probe_case(conn, fresh, text).findings
    # What may be left: findings whose fix is a decision for a person, which says that no
    # SQL fix is printed and what to do instead.
    left = [
        (f.rule.code, f.object, f.message, f.fix_sql)
        for f in after
        if not (f.fix_sql and not _runnable(f.fix_sql) and "no SQL fix" in f.fix_sql)
    ]
    assert not left, f"still reported after every fix ran: {left}"
