"""The ``tenantguard lint`` command."""

from __future__ import annotations

import click

from tenantguard._cli_util import finish, handled, report_options

__all__ = ["lint_command"]


@click.command("lint")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--tenant-column", default="tenant_id", show_default=True)
@click.option("--setting", default="app.tenant_id", show_default=True, help="The tenant setting.")
@click.option("--app-role", default=None, help="The runtime role (enables TGL112).")
@report_options()
@handled
def lint_command(
    paths: tuple[str, ...],
    fmt: str,
    output: str | None,
    tenant_column: str,
    setting: str,
    app_role: str | None,
    fail_on: str,
) -> None:
    """Lint SQL migration files (and directories of them); exit 0 clean, 1 findings, 2 error.

    Suppress one finding with a comment on the statement's line or the line before:
    `-- tenantguard: ignore TGL101 reason: <why this is safe>`.
    """
    from tenantguard.tooling.lint import lint_paths

    report = lint_paths(paths, tenant_column=tenant_column, setting=setting, app_role=app_role)
    finish(report, fmt, output, fail_on)
