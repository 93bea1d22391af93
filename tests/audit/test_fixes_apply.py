"""Every fix the audit prints runs as pasted, and re-running the audit clears the finding.

For each leaky fixture: audit, run each finding's ``fix_sql`` as the admin (a fix that
says it needs ``tenantguard install`` or names a decision for a person is skipped, and
says so), audit again: the findings whose fix ran are gone.
"""

from __future__ import annotations

import pytest

from audit.test_audit import CASES, CASES_DIR, pooler_for, run_case
from tenantguard.admin import install
from tenantguard.core.sqlbuild import InstallSpec
from tenantguard.tooling.audit import audit_database


def _runnable(fix: str) -> bool:
    """A fix with at least one statement (not only comments)."""
    return any(line.strip() and not line.strip().startswith("--") for line in fix.splitlines())


@pytest.mark.parametrize("case", CASES)
def test_every_fix_runs_and_clears_its_finding(server_dsn, case: str) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_scratch

    text = (CASES_DIR / case / "leaky.sql").read_text()
    gen = make_scratch(server_dsn)
    s = next(gen)
    try:
        if pooler_for(text, s.dbname, server_dsn) is not None:
            pytest.skip("the fix is PgBouncer configuration, not SQL")
        with s.admin() as conn:
            signed = "-- install: signed" in text
            keys = f"tg_keys_{s.suffix}"
            install(
                conn,
                InstallSpec(
                    app_role=s.app_role,
                    owner_role=s.owner_role,
                    signed=signed,
                    key_owner_role=keys if signed else None,
                ),
            )
            run_case(conn, text, s.app_role, s.owner_role, keys)
            before = audit_database(conn, app_role=s.app_role).findings
            applied = []
            for f in before:
                if f.fix_sql and _runnable(f.fix_sql):
                    try:
                        conn.execute(f.fix_sql)
                    except Exception as exc:  # the fix did not run as pasted
                        pytest.fail(f"{f.rule.code} fix for {f.object} failed: {exc}\n{f.fix_sql}")
                    applied.append((f.rule.code, f.object))
            after = audit_database(conn, app_role=s.app_role).findings
        left = [(f.rule.code, f.object) for f in after if (f.rule.code, f.object) in applied]
        assert not left, f"still reported after their fix ran: {left}"
        # Nothing new either: what is left is only what has no runnable fix (a decision for
        # a person, which the fix says), so pasting every fix takes the case to 0 actionable.
        new = [
            (f.rule.code, f.object, f.fix_sql) for f in after if f.fix_sql and _runnable(f.fix_sql)
        ]
        assert not new, f"reported after every fix ran, with a runnable fix: {new}"
    finally:
        gen.close()
