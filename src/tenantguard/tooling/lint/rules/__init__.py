"""Lint rules: one module per rule (``tgl1xx_*.py``) with ``RULE`` and a ``check(ctx)``
registered with :data:`REGISTRY` (see :mod:`tenantguard.tooling.registry`)."""

from __future__ import annotations

from tenantguard.tooling.findings import Rule, Severity
from tenantguard.tooling.lint.engine import LintContext
from tenantguard.tooling.registry import Registry

__all__ = ["META", "REGISTRY", "RULES"]

REGISTRY: Registry[LintContext] = Registry("lint", __name__, "tgl")

# Rules the engine itself reports (parse errors and suppression hygiene).
META = {
    "TGL100": Rule(
        "TGL100",
        "parse-error",
        Severity.HIGH,
        "lint",
        "The file is not valid PostgreSQL SQL",
        "A migration the linter cannot parse cannot be checked; it would also fail to apply.",
    ),
    "TGL195": Rule(
        "TGL195",
        "stale-baseline-entry",
        Severity.LOW,
        "lint",
        "A baseline entry matches no finding any more",
        "The finding it recorded was fixed (or its statement changed). Rewrite the baseline "
        "with --write-baseline so the file lists only what is still accepted.",
    ),
    "TGL196": Rule(
        "TGL196",
        "tenant-key-ambiguous",
        Severity.HIGH,
        "lint",
        "Cannot tell which column of a table holds the tenant",
        "Two or more columns reference tenant keys of other tables, so the tenant key cannot "
        "be inferred and the table's policies cannot be judged. Name it: "
        "--tenant-column SCHEMA.TABLE=COLUMN (or [tool.tenantguard.tenant-columns]).",
    ),
    "TGL197": Rule(
        "TGL197",
        "unchecked-dynamic-sql",
        Severity.LOW,
        "lint",
        "A DO block runs SQL built at run time, which the linter cannot check",
        "EXECUTE of an expression (format(), concatenation) is only known when it runs. "
        "Check that it does not disable RLS, drop policies, or set the tenant for the session; "
        "or write the statements out.",
    ),
    "TGL198": Rule(
        "TGL198",
        "suppression-without-reason",
        Severity.MEDIUM,
        "lint",
        "A suppression comment gives no reason",
        "Write `-- tenantguard: ignore TGLxxx reason: <why this is safe>`; without a "
        "reason the suppression does not apply.",
    ),
    "TGL199": Rule(
        "TGL199",
        "unused-suppression",
        Severity.LOW,
        "lint",
        "A suppression comment matches no finding",
        "Stale suppressions hide the next real finding on that line; remove them.",
    ),
}


RULES: list[Rule] = REGISTRY.rules() + list(META.values())
