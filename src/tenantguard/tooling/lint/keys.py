"""Which column holds the tenant in each table the migrations create.

A table's tenant key comes, in this order, from an explicit ``TABLE=COLUMN`` mapping, from
the default column (``tenant_id``), or is inferred from its foreign keys: a column that
references the tenant key of a table already known to be a tenant table (so
``campaigns.company_id REFERENCES companies(id)`` once ``companies=id`` is mapped, and
``ads.company_id`` through ``FOREIGN KEY (company_id, campaign_id) REFERENCES campaigns
(company_id, id)``). The tenant root table, the one the tenant keys reference (``tenants``
for ``tenant_id REFERENCES tenants(id)``), is a tenant table too, keyed by its own id: any
tenant that can read it lists every tenant. A key is inferred only when exactly one column
qualifies; two candidates are reported (TGL196), never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pglast import ast

from tenantguard.core.names import QualifiedName
from tenantguard.errors import UsageError

__all__ = ["TableShape", "TenantKey", "parse_table_name", "resolve_keys"]


def parse_table_name(text: str) -> str:
    """``app.Invoices`` -> ``app.invoices`` as the linter names tables (unquoted parts fold
    to lower case, as PostgreSQL folds them; ``public`` when unqualified)."""
    q = QualifiedName.parse(text.strip())
    if '"' in text:
        return f"{q.schema}.{q.name}"
    return f"{q.schema.lower()}.{q.name.lower()}"


@dataclass
class TableShape:
    """What the files say about one table: its columns, primary key and foreign keys."""

    name: str
    columns: list[str] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # column -> type as written
    primary_key: list[str] = field(default_factory=list)
    # (local columns, referenced table, referenced columns or [] for its primary key)
    foreign_keys: list[tuple[list[str], str, list[str]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TenantKey:
    """The tenant column of one table and where that knowledge came from."""

    column: str
    source: str  # "mapped", "default", "root", "inferred"
    reason: str = ""  # for "root" / "inferred": which reference made it so

    def describe(self) -> str:
        return {
            "mapped": "mapped",
            "default": "the default tenant column",
        }.get(self.source, self.reason)


def _names(items: Any) -> list[str]:
    return [getattr(i, "sval", "") for i in items or ()]


def _add_constraint(shape: TableShape, con: Any, column: str | None = None) -> None:
    kind = getattr(con.contype, "name", "")
    if kind == "CONSTR_PRIMARY":
        shape.primary_key = [column] if column else _names(con.keys)
    elif kind == "CONSTR_FOREIGN" and con.pktable is not None:
        local = [column] if column else _names(con.fk_attrs)
        target = f"{con.pktable.schemaname or 'public'}.{con.pktable.relname}"
        shape.foreign_keys.append((local, target, _names(con.pk_attrs)))


def _type_name(col: Any) -> str:
    names = [n for n in _names(getattr(col.typeName, "names", None)) if n != "pg_catalog"]
    return ".".join(names)


def add_column(shape: TableShape, col: Any) -> None:
    if col.colname in shape.columns:
        return
    shape.columns.append(col.colname)
    shape.types[col.colname] = _type_name(col)
    for con in col.constraints or ():
        _add_constraint(shape, con, col.colname)


def table_shapes(nodes: Iterable[Any], rel_name: Any) -> dict[str, TableShape]:
    """Every table the statements create, with what later ALTERs add to it."""
    shapes: dict[str, TableShape] = {}
    for n in nodes:
        if isinstance(n, ast.CreateStmt):
            if getattr(n.relation, "relpersistence", "p") == "t":
                continue  # a temporary table lives for one session: not the schema
            shape = shapes.setdefault(rel_name(n.relation), TableShape(rel_name(n.relation)))
            for e in n.tableElts or ():
                if isinstance(e, ast.ColumnDef):
                    add_column(shape, e)
                elif isinstance(e, ast.Constraint):
                    _add_constraint(shape, e)
        elif isinstance(n, ast.AlterTableStmt) and n.relation is not None:
            existing = shapes.get(rel_name(n.relation))
            if existing is None:
                continue
            for cmd in n.cmds or ():
                sub = getattr(cmd.subtype, "name", "")
                if sub == "AT_AddColumn" and isinstance(cmd.def_, ast.ColumnDef):
                    add_column(existing, cmd.def_)
                elif sub == "AT_AddConstraint" and isinstance(cmd.def_, ast.Constraint):
                    _add_constraint(existing, cmd.def_)
    return shapes


@dataclass
class KeyResolution:
    keys: dict[str, TenantKey]
    ambiguous: dict[str, list[str]]  # table -> candidate columns (each names its reference)
    unmatched_mappings: list[str]  # mapped tables no file creates


def resolve_keys(
    shapes: Mapping[str, TableShape], default_column: str, mapping: Mapping[str, str]
) -> KeyResolution:
    """The tenant key of every table in *shapes* that has one.

    Raises :class:`UsageError` when a mapping names a column its table does not have."""
    keys: dict[str, TenantKey] = {}
    for table, column in mapping.items():
        shape = shapes.get(table)
        if shape is None:
            continue
        if column not in shape.columns:
            raise UsageError(
                f"--tenant-column {table}={column}: {table} has no column {column}"
                f" (it has {', '.join(shape.columns) or 'no columns'})",
                hint="fix the mapping on the command line or in the tenantguard settings file",
            )
        keys[table] = TenantKey(column, "mapped")
    for table, shape in shapes.items():
        if table not in keys and default_column in shape.columns:
            keys[table] = TenantKey(default_column, "default")
    # The root: the one table that the tenant keys of other tables reference.
    roots: dict[str, str] = {}  # table -> its key column, as referenced
    for table, key in keys.items():
        for local, target, remote in shapes[table].foreign_keys:
            target_shape = shapes.get(target)
            if key.column in local and target_shape is not None and target != table:
                cols = remote or target_shape.primary_key
                if len(local) == len(cols):
                    referenced = cols[local.index(key.column)]
                    if target not in keys or keys[target].column == referenced:
                        roots[target] = referenced
    direct_roots = {t: c for t, c in roots.items() if t not in keys}
    if len(direct_roots) == 1:
        ((root, column),) = direct_roots.items()
        keys[root] = TenantKey(
            column, "root", f"tenant root: the tenant keys reference {root}.{column}"
        )
    # Inference to a fixed point: a column that references a tenant table's key.
    ambiguous: dict[str, list[str]] = {}
    changed = True
    while changed:
        changed = False
        for table, shape in shapes.items():
            if table in keys:
                continue
            found: dict[str, str] = {}
            for local, target, remote in shape.foreign_keys:
                target_key = keys.get(target)
                target_shape = shapes.get(target)
                if target_key is None or target_shape is None or target == table:
                    continue
                cols = remote or target_shape.primary_key
                if len(cols) != len(local) or target_key.column not in cols:
                    continue
                col = local[cols.index(target_key.column)]
                found.setdefault(col, f"references {target}.{target_key.column}")
            if len(found) == 1:
                ((col, why),) = found.items()
                keys[table] = TenantKey(col, "inferred", why)
                changed = True
            elif len(found) > 1:
                ambiguous[table] = [f"{c} ({why})" for c, why in sorted(found.items())]
    for table in keys:
        ambiguous.pop(table, None)
    unmatched = sorted(t for t in mapping if t not in shapes)
    return KeyResolution(keys, ambiguous, unmatched)


def root_candidates(shapes: Mapping[str, TableShape]) -> list[str]:
    """Where to look for the tenant root when no table has the tenant column: the tables
    that the most other tables reach through chains of foreign keys (``companies`` before
    ``campaigns`` when ``ads`` references ``campaigns``, which references ``companies``)."""
    targets = {
        t: {target for _, target, _ in shape.foreign_keys if target in shapes and target != t}
        for t, shape in shapes.items()
    }
    reached_by: dict[str, set[str]] = {}
    for start in shapes:
        seen: set[str] = set()
        stack = list(targets[start])
        while stack:
            t = stack.pop()
            if t not in seen and t != start:
                seen.add(t)
                stack.extend(targets[t])
        for t in seen:
            reached_by.setdefault(t, set()).add(start)
    ranked = sorted(reached_by.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [t for t, _ in ranked[:3]]
