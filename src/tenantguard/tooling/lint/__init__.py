"""``tenantguard lint``: check SQL migrations for isolation mistakes, no database needed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from tenantguard.tooling.findings import Report
from tenantguard.tooling.lint.baseline import Baseline
from tenantguard.tooling.lint.engine import lint_paths as _lint_paths
from tenantguard.tooling.lint.rules import REGISTRY, RULES

__all__ = ["RULES", "Baseline", "lint_paths"]


def lint_paths(
    paths: Iterable[str | Path],
    *,
    tenant_column: str = "tenant_id",
    tenant_columns: Mapping[str, str] | None = None,
    setting: str = "app.tenant_id",
    app_role: str | None = None,
    baseline: str | Path | None = None,
    write_baseline: str | Path | None = None,
) -> Report:
    """Lint files and directories of ``*.sql`` migrations (in name order, as applied).

    *tenant_columns* maps ``schema.table`` to its tenant column where it is not
    *tenant_column*; *baseline* names a file recorded by *write_baseline* whose findings
    are not reported again. Raises :class:`~tenantguard.errors.UsageError` when the files
    create tables and none has a tenant key.
    """
    return _lint_paths(
        paths,
        rules=REGISTRY.checks(),
        tenant_column=tenant_column,
        tenant_columns=tenant_columns,
        setting=setting,
        app_role=app_role,
        baseline=Baseline.load(baseline) if baseline is not None else None,
        write_baseline=write_baseline,
    )
