"""The ``tenantguard lint`` command."""

from __future__ import annotations

import click
from rich.markup import escape

from tenantguard._cli_util import err, finish, handled, report_options

__all__ = ["lint_command"]


@click.command("lint")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--tenant-column",
    "tenant_columns",
    multiple=True,
    metavar="COLUMN | SCHEMA.TABLE=COLUMN",
    help="The tenant column (default tenant_id), and per-table keys where a table names it "
    "otherwise (repeatable).",
)
@click.option("--setting", default=None, help="The tenant setting (default app.tenant_id).")
@click.option("--app-role", default=None, help="The runtime role (enables TGL112).")
@click.option(
    "--baseline",
    default=None,
    type=click.Path(dir_okay=False),
    help="Report only findings this baseline file does not record.",
)
@click.option(
    "--write-baseline",
    default=None,
    type=click.Path(dir_okay=False),
    help="Record this run's findings in FILE (then report as with --baseline FILE).",
)
@click.option(
    "--config",
    "config_file",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="Settings file (default: tenantguard.toml, or [tool.tenantguard] in pyproject.toml, "
    "in this directory or a parent).",
)
@report_options()
@handled
def lint_command(
    paths: tuple[str, ...],
    fmt: str,
    output: str | None,
    tenant_columns: tuple[str, ...],
    setting: str | None,
    app_role: str | None,
    baseline: str | None,
    write_baseline: str | None,
    config_file: str | None,
    fail_on: str,
) -> None:
    """Lint SQL migration files (and directories of them); exit 0 clean, 1 findings, 2 error.

    Exit 2 too when the files create tables and none has a tenant key: name the column
    (--tenant-column company_id) or the tenant root table (--tenant-column companies=id),
    whose referencing columns are then inferred.

    Suppress one finding with a comment on the statement's line or the line before:
    `-- tenantguard: ignore TGL101 reason: <why this is safe>`.
    """
    from tenantguard.tooling.config import load_config, parse_tenant_columns
    from tenantguard.tooling.lint import lint_paths

    if baseline and write_baseline:
        raise click.UsageError("--baseline and --write-baseline exclude each other")
    cfg = load_config(config_file)
    default, mapping = parse_tenant_columns(tenant_columns)
    report = lint_paths(
        paths,
        tenant_column=default or cfg.tenant_column or "tenant_id",
        tenant_columns={**cfg.tenant_columns, **mapping},
        setting=setting or cfg.setting or "app.tenant_id",
        app_role=app_role or cfg.app_role,
        baseline=baseline,
        write_baseline=write_baseline,
    )
    _explain_scope(report.meta, cfg.source)
    finish(report, fmt, output, fail_on)


def _explain_scope(meta: dict[str, object], config_source: str | None) -> None:
    """Say on stderr what was checked: inferred keys, shared tables, the baseline."""
    if config_source:
        err.print(f"[dim]settings from {escape(config_source)}[/]", highlight=False)
    keys = meta.get("tenant_keys")
    if isinstance(keys, dict):
        for table, key in keys.items():
            if key["source"] in ("inferred", "root"):
                err.print(
                    f"[cyan]inferred[/] tenant key {escape(table)}.{escape(key['column'])}"
                    f" ({escape(key['reason'])})",
                    highlight=False,
                )
        err.print(f"[dim]{len(keys)} tenant table(s) checked[/]", highlight=False)
    shared = meta.get("shared_tables")
    if isinstance(shared, list) and shared:
        err.print(
            f"[dim]no tenant key, checked as shared tables: {escape(', '.join(shared))}[/]",
            highlight=False,
        )
    unmatched = meta.get("unmatched_mappings")
    if isinstance(unmatched, list) and unmatched:
        err.print(
            f"[yellow]note:[/] no file creates {escape(', '.join(unmatched))} (mapped by "
            "--tenant-column); its policies are judged by that key",
            highlight=False,
        )
    base = meta.get("baseline")
    if isinstance(base, dict):
        err.print(
            f"baseline {escape(str(base['file']))}: {base['matched']} known finding(s) not "
            f"shown, {base['stale']} stale entr{'y' if base['stale'] == 1 else 'ies'}",
            highlight=False,
        )
