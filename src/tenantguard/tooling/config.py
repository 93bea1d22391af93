"""Project settings for the proof tools, from ``tenantguard.toml`` or ``pyproject.toml``.

``tenantguard.toml`` holds the keys at top level; ``pyproject.toml`` under
``[tool.tenantguard]``. The first of the two found in the working directory or a parent
is used (``--config FILE`` names one). Options on the command line win::

    [tool.tenantguard]
    tenant-column = "tenant_id"        # the default tenant column
    setting = "app.tenant_id"
    app-role = "app_user"

    [tool.tenantguard.tenant-columns]  # tables whose tenant key is named otherwise
    "public.companies" = "id"
    "public.campaigns" = "company_id"

An unknown key is an error, so a typo never silently changes what is checked.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenantguard.errors import UsageError

__all__ = ["ToolConfig", "load_config", "parse_tenant_columns"]

_KEYS = {"tenant-column", "tenant-columns", "setting", "app-role"}


@dataclass
class ToolConfig:
    source: str | None = None  # the file read, if any
    tenant_column: str | None = None
    tenant_columns: dict[str, str] = field(default_factory=dict)
    setting: str | None = None
    app_role: str | None = None


def _find(start: Path) -> tuple[Path, dict[str, Any]] | None:
    for folder in (start, *start.parents):
        own = folder / "tenantguard.toml"
        if own.is_file():
            return own, _read(own)
        py = folder / "pyproject.toml"
        if py.is_file():
            section = _read(py).get("tool", {}).get("tenantguard")
            if isinstance(section, dict):
                return py, section
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", hint="fix the TOML syntax") from None


def load_config(explicit: str | Path | None = None, start: Path | None = None) -> ToolConfig:
    """The settings in *explicit*, or in the nearest ``tenantguard.toml`` / ``pyproject.toml``."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise UsageError(f"config file {path} does not exist")
        data = _read(path)
        section = data.get("tool", {}).get("tenantguard") if path.name == "pyproject.toml" else data
        if not isinstance(section, dict):
            raise UsageError(
                f"{path} has no tool.tenantguard section",
                hint="add one, or pass a tenantguard.toml with the keys at top level",
            )
        found: tuple[Path, dict[str, Any]] | None = (path, section)
    else:
        found = _find(start or Path.cwd())
    if found is None:
        return ToolConfig()
    path, section = found
    unknown = sorted(set(section) - _KEYS)
    if unknown:
        raise UsageError(
            f"{path}: unknown tenantguard setting(s) {', '.join(unknown)}",
            hint=f"known settings: {', '.join(sorted(_KEYS))}",
        )
    cols = section.get("tenant-columns", {})
    if not isinstance(cols, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in cols.items()
    ):
        raise UsageError(
            f'{path}: tenant-columns must map "SCHEMA.TABLE" to a column name',
            hint='e.g. "public.companies" = "id" in the tool.tenantguard.tenant-columns table',
        )
    for key in ("tenant-column", "setting", "app-role"):
        if key in section and not isinstance(section[key], str):
            raise UsageError(f"{path}: {key} must be a string")
    from tenantguard.core.names import check_identifier
    from tenantguard.tooling.lint.keys import parse_table_name

    return ToolConfig(
        source=str(path),
        tenant_column=section.get("tenant-column"),
        tenant_columns={
            parse_table_name(k): check_identifier(v, "column name") for k, v in cols.items()
        },
        setting=section.get("setting"),
        app_role=section.get("app-role"),
    )


def parse_tenant_columns(values: Iterable[str]) -> tuple[str | None, dict[str, str]]:
    """``--tenant-column`` values: at most one bare COLUMN (the default) and any number
    of ``SCHEMA.TABLE=COLUMN`` mappings."""
    from tenantguard.core.names import check_identifier
    from tenantguard.tooling.lint.keys import parse_table_name

    default: str | None = None
    mapping: dict[str, str] = {}
    for value in values:
        if "=" in value:
            table, _, column = value.partition("=")
            if not table.strip() or not column.strip():
                raise UsageError(
                    f"--tenant-column {value!r}: expected SCHEMA.TABLE=COLUMN",
                    hint="e.g. --tenant-column public.companies=id",
                )
            name = parse_table_name(table)
            if name in mapping and mapping[name] != column.strip():
                raise UsageError(f"--tenant-column maps {name} twice")
            mapping[name] = check_identifier(column.strip(), "column name")
        else:
            if default is not None and default != value:
                raise UsageError(
                    f"--tenant-column given two default columns ({default}, {value})",
                    hint="give one COLUMN and SCHEMA.TABLE=COLUMN for the tables named otherwise",
                )
            default = check_identifier(value, "column name")
    return default, mapping
