"""What the probe needs to know about each tenant table beyond the audit's catalog facts.

Columns (to build rows), keys (to aim at another tenant's row and to test unique-key
oracles), foreign keys into the table, the views and SECURITY DEFINER functions over
it, and the runtime role's persistent settings. Read-only catalog queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from tenantguard.core.names import QualifiedName

__all__ = ["Column", "ForeignKey", "FunctionOver", "TableMeta", "UniqueKey", "load_meta"]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): usable in a cast
    category: str  # pg_type.typcategory
    not_null: bool
    has_default: bool
    identity: str  # '', 'a' (ALWAYS), 'd' (BY DEFAULT)
    generated: bool
    sequence_default: bool  # DEFAULT nextval(...)
    enum_first: str | None  # first label of an enum type
    max_length: int | None  # varchar(n) / char(n)


@dataclass(frozen=True)
class UniqueKey:
    name: str  # index name
    columns: tuple[str, ...]
    primary: bool


@dataclass(frozen=True)
class ForeignKey:
    name: str
    child_oid: int
    child_columns: tuple[str, ...]
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class FunctionOver:
    signature: str  # regprocedure text, e.g. app.get_invoice(bigint)
    schema: str
    name: str
    arg_types: tuple[str, ...]
    returns_set: bool


@dataclass
class TableMeta:
    oid: int
    name: QualifiedName
    columns: list[Column]
    unique_keys: list[UniqueKey]
    referenced_by: list[ForeignKey] = field(default_factory=list)
    views: list[tuple[QualifiedName, str, bool]] = field(
        default_factory=list
    )  # name, relkind, has tenant col
    functions: list[FunctionOver] = field(default_factory=list)

    @property
    def primary_key(self) -> tuple[str, ...]:
        for k in self.unique_keys:
            if k.primary:
                return k.columns
        return ()

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def unique_columns(self) -> set[str]:
        return {c for k in self.unique_keys for c in k.columns}


_COLUMNS = """
SELECT a.attrelid::int, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
       t.typcategory::text, a.attnotnull, a.atthasdef, a.attidentity::text,
       a.attgenerated <> '', coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%', false),
       (SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid
        ORDER BY e.enumsortorder LIMIT 1),
       CASE WHEN a.atttypid IN ('varchar'::regtype, 'bpchar'::regtype) AND a.atttypmod > 4
            THEN a.atttypmod - 4 END
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
# Unique indexes on plain columns (expression indexes cannot be aimed at generically).
_UNIQUE = """
SELECT i.indrelid::int, c.relname::text, i.indisprimary,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.n)
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indisunique AND i.indrelid = ANY(%(oids)s) AND i.indexprs IS NULL AND i.indpred IS NULL
  AND NOT (0 = ANY(i.indkey))
ORDER BY i.indisprimary DESC, c.relname
"""
_FKS = """
SELECT con.conname::text, con.confrelid::int, con.conrelid::int,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.n),
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.n)
FROM pg_catalog.pg_constraint con
WHERE con.contype = 'f' AND con.confrelid = ANY(%(oids)s) AND con.conrelid = ANY(%(oids)s)
  AND con.conparentid = 0
"""
# Views and materialized views whose rewrite rule reads the table, selectable by the role.
_VIEWS = """
SELECT DISTINCT d.refobjid::int, n.nspname::text, v.relname::text, v.relkind::text,
       EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = v.oid AND a.attname = %(col)s AND NOT a.attisdropped)
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_catalog.pg_rewrite'::regclass
JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
WHERE d.refobjid = ANY(%(oids)s) AND v.oid <> d.refobjid AND v.relkind IN ('v', 'm')
  AND pg_catalog.has_table_privilege(%(role)s, v.oid, 'SELECT')
ORDER BY 2, 3
"""
# SECURITY DEFINER functions the runtime role may call, whose body names the table.
# (A name match selects candidates; the probe then calls them to see what they return.)
_FUNCTIONS = """
SELECT p.oid::regprocedure::text, n.nspname::text, p.proname::text,
       ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM unnest(p.proargtypes) t),
       p.proretset, p.prosrc
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef AND p.prokind = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND pg_catalog.has_function_privilege(%(role)s, p.oid, 'EXECUTE')
  AND p.pronargs <= 1 AND p.prorettype <> 'pg_catalog.trigger'::regtype
"""
ROLE_DEFAULTS = """
SELECT s.setconfig
FROM pg_catalog.pg_db_role_setting s
WHERE (s.setrole = 0 OR s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(role)s))
  AND (s.setdatabase = 0 OR s.setdatabase =
       (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
ORDER BY (s.setrole <> 0) ASC, (s.setdatabase <> 0) ASC  -- most specific last: it wins
"""


def role_defaults(conn: psycopg.Connection[Any], role: str) -> list[tuple[str, str]]:
    """The custom settings the runtime role gets at login (role, database, both)."""
    out: dict[str, str] = {}
    for (config,) in conn.execute(ROLE_DEFAULTS, {"role": role}).fetchall():
        for item in config or ():
            name, _, value = item.partition("=")
            if "." in name:
                out[name] = value
    return list(out.items())


def load_meta(
    conn: psycopg.Connection[Any],
    oids: list[int],
    names: dict[int, QualifiedName],
    *,
    role: str,
    tenant_column: str,
) -> dict[int, TableMeta]:
    metas = {oid: TableMeta(oid, names[oid], [], []) for oid in oids}
    for row in conn.execute(_COLUMNS, {"oids": oids}).fetchall():
        metas[row[0]].columns.append(Column(*row[1:]))
    for relid, index, primary, cols in conn.execute(_UNIQUE, {"oids": oids}).fetchall():
        metas[relid].unique_keys.append(UniqueKey(index, tuple(cols), primary))
    for name, parent, child, ccols, pcols in conn.execute(_FKS, {"oids": oids}).fetchall():
        metas[parent].referenced_by.append(ForeignKey(name, child, tuple(ccols), tuple(pcols)))
    for relid, schema, view, kind, has_col in conn.execute(
        _VIEWS, {"oids": oids, "role": role, "col": tenant_column}
    ).fetchall():
        metas[relid].views.append((QualifiedName(schema, view), kind, has_col))
    funcs = conn.execute(_FUNCTIONS, {"role": role}).fetchall()
    for m in metas.values():
        for sig, schema, fname, args, retset, src in funcs:
            if m.name.name in (src or ""):
                m.functions.append(FunctionOver(sig, schema, fname, tuple(args), retset))
    return metas
