"""TGA170 server-version-rls-cves: the server predates fixes for known RLS CVEs."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.tooling.audit.rules import REGISTRY
from tenantguard.tooling.catalog import AuditContext
from tenantguard.tooling.findings import Finding, Rule, Severity

RULE = Rule(
    code="TGA170",
    name="server-version-rls-cves",
    severity=Severity.HIGH,
    tool="audit",
    summary="PostgreSQL minor version has known row level security vulnerabilities",
    description="Some releases apply the wrong policies in edge cases (user ID changes within a "
    "query, CREATE POLICY with role changes). Upgrade to the fixed minor release.",
    anti_pattern="PostgreSQL 15.2",
    best_practice="PostgreSQL 15.9 or later in the 15 series",
)

# (CVE, {major: first fixed server_version_num})
CVES = [
    (
        "CVE-2023-2455 (RLS policies with user ID changes after plan caching)",
        {11: 110020, 12: 120015, 13: 130011, 14: 140008, 15: 150003},
    ),
    (
        "CVE-2024-10976 (RLS below subqueries disregards user ID changes)",
        {12: 120021, 13: 130017, 14: 140014, 15: 150009, 16: 160005, 17: 170001},
    ),
]


def vulnerable(version_num: int) -> list[str]:
    major = version_num // 10000
    return [cve for cve, fixed in CVES if major in fixed and version_num < fixed[major]]


@REGISTRY.register(RULE)
def check(ctx: AuditContext) -> Iterator[Finding]:
    major = ctx.server_version_num // 10000
    if major < 12:
        yield Finding(RULE, "server", f"PostgreSQL {major} is out of support", fix_sql="-- upgrade")
    for cve in vulnerable(ctx.server_version_num):
        yield Finding(
            RULE,
            "server",
            f"server_version_num {ctx.server_version_num} is affected by {cve}",
            fix_sql="-- upgrade to the latest minor release of this major version",
        )
