"""One severity per defect: a probe attack that succeeds is rated as the audit rates the
configuration that let it through.

The audit reads the live catalog and rates by what the runtime role can reach; the probe
proves the same defect by attacking it. For each attack, the audit rules below report the
configurations that make it succeed; on the same database the attack's finding and the
worst of those audit findings carry the same level (tests/probe/test_same_severity.py runs
every leaky fixture through both tools).
"""

from __future__ import annotations

__all__ = ["SAME_DEFECT"]

_READ = ("TGA101", "TGA120", "TGA122", "TGA124")  # no RLS, fail-open, unrestricted, widening

# probe attack -> the audit rules that report what lets it through
SAME_DEFECT: dict[str, tuple[str, ...]] = {
    "TGP101": _READ,
    "TGP102": _READ,
    "TGP103": ("TGA101", "TGA121"),
    "TGP104": ("TGA121",),
    "TGP105": _READ,
    "TGP106": _READ,
    "TGP107": ("TGA150",),
    "TGP108": ("TGA150",),
    "TGP109": ("TGA140", "TGA141"),
    "TGP110": ("TGA104",),
    "TGP111": ("TGA133",),
    "TGP112": ("TGA130",),
    "TGP113": ("TGA120",),
    "TGP114": ("TGA120", "TGA122", "TGA124"),
    "TGP115": ("TGA106",),
    "TGP116": ("TGA107",),
    "TGP117": ("TGA136", "TGA137"),
    "TGP118": ("TGA126",),
    "TGP119": ("TGA133", "TGA140"),
}
