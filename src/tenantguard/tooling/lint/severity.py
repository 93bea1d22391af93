"""One severity per defect: a lint rule rates a defect as the audit rates the same defect.

The audit sees the live database and rates by what the runtime role can reach; lint sees
only the migration, so for each defect both tools report, lint takes the audit rule's
severity from the audit's own rule definition (never a copy that could drift). Missing
``FORCE ROW LEVEL SECURITY`` is medium in both: the runtime role reaches other tenants'
rows through it only as the table's owner, which is critical on its own (TGA110, TGL112),
or through the owner's views and SECURITY DEFINER functions, rated by their own rules.
"""

from __future__ import annotations

from tenantguard.tooling.audit.rules import RULES as _AUDIT_RULES
from tenantguard.tooling.findings import Severity

__all__ = ["SAME_DEFECT", "as_audit"]

_AUDIT = {r.code: r for r in _AUDIT_RULES}

# lint rule -> the audit rule(s) for the same defect (TGL101/TGL102 split by what is missing)
SAME_DEFECT: dict[str, tuple[str, ...]] = {
    "TGL101": ("TGA101", "TGA102", "TGA103"),  # no ENABLE / no FORCE / no policy
    "TGL102": ("TGA101", "TGA102"),  # DISABLE / NO FORCE
    "TGL103": ("TGA121",),
    "TGL104": ("TGA120",),
    "TGL105": ("TGA130",),
    "TGL106": ("TGA131",),
    "TGL107": ("TGA132",),
    "TGL108": ("TGA140",),
    "TGL109": ("TGA112",),
    "TGL111": ("TGA110",),
    "TGL112": ("TGA110",),
    "TGL113": ("TGA105",),
    "TGL114": ("TGA124",),
    "TGL115": ("TGA142",),
}


def as_audit(code: str) -> Severity:
    """The severity the audit gives its rule *code*."""
    return _AUDIT[code].severity
