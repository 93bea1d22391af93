"""One severity per defect across probe and audit: every leaky probe fixture, run through
both tools, gives the attack's findings the level of the worst audit finding for the same
defect (:data:`tenantguard.tooling.probe.severity.SAME_DEFECT`)."""

from __future__ import annotations

import pytest

from tenantguard.tooling.audit import audit_database
from tenantguard.tooling.probe import RULES
from tenantguard.tooling.probe.severity import SAME_DEFECT

from .test_probe import CASES, CASES_DIR, prepare_case, probe_case


def test_every_attack_names_its_audit_rules() -> None:
    from tenantguard.tooling.audit.rules import RULES as AUDIT_RULES

    audit = {r.code for r in AUDIT_RULES}
    attacks = {r.code for r in RULES if r.code < "TGP190"}  # TGP19x: the probe's own notes
    assert set(SAME_DEFECT) == attacks
    assert all(set(codes) <= audit for codes in SAME_DEFECT.values())


@pytest.mark.parametrize("case", CASES)
def test_the_attack_and_the_audit_rate_the_defect_alike(fresh, case: str) -> None:  # type: ignore[no-untyped-def]
    code = case.split("_", 1)[0]
    text = (CASES_DIR / case / "leaky.sql").read_text()
    with fresh.admin() as conn:
        prepare_case(conn, fresh, text)
        probe = probe_case(conn, fresh, text)
        audit = audit_database(conn, app_role=fresh.app_role)
    attack = {f.level for f in probe.findings if f.rule.code == code}
    same = [f.level for f in audit.findings if f.rule.code in SAME_DEFECT[code]]
    assert attack and same, (code, [(f.rule.code, f.message) for f in audit.findings])
    assert attack == {max(same)}, (code, attack, [(f.rule.code, f.level) for f in audit.findings])
