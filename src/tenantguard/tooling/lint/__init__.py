"""``tenantguard lint``: check SQL migrations for isolation mistakes, no database needed."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tenantguard.tooling.findings import Report
from tenantguard.tooling.lint.engine import lint_paths as _lint_paths
from tenantguard.tooling.lint.rules import RULES, all_rules

__all__ = ["RULES", "lint_paths"]


def lint_paths(
    paths: Iterable[str | Path],
    *,
    tenant_column: str = "tenant_id",
    setting: str = "app.tenant_id",
    app_role: str | None = None,
) -> Report:
    """Lint files and directories of ``*.sql`` migrations (in name order, as applied)."""
    return _lint_paths(
        paths, rules=all_rules(), tenant_column=tenant_column, setting=setting, app_role=app_role
    )
