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

__all__ = ["Column", "ForeignKey", "FunctionOver", "TableMeta", "UniqueKey", "View", "load_meta"]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): usable in a cast
    category: str  # pg_type.typcategory
    not_null: bool
    has_default: bool
    identity: str  # '', 'a' (ALWAYS), 'd' (BY DEFAULT)
    generated: bool
    sequence_default: bool  # a default that calls nextval() (serial, 'INV-' || nextval(..))
    enum_first: str | None  # first label of an enum type
    max_length: int | None  # varchar(n) / char(n)


@dataclass(frozen=True)
class UniqueKey:
    name: str  # index name
    columns: tuple[str, ...]  # empty for an expression index
    primary: bool
    plain: bool = True  # False: an expression or partial index (not aimed at generically)


@dataclass(frozen=True)
class ForeignKey:
    name: str
    child_oid: int
    child_columns: tuple[str, ...]
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class Reference:
    """A foreign key out of a tenant table, to any table."""

    name: str
    child_columns: tuple[str, ...]
    parent: QualifiedName
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class FunctionOver:
    signature: str  # regprocedure text, e.g. app.get_invoice(bigint)
    schema: str
    name: str
    arg_types: tuple[str, ...]
    returns_set: bool
    volatile: bool


@dataclass(frozen=True)
class View:
    name: QualifiedName
    kind: str  # 'v' view, 'm' materialized view
    has_tenant_column: bool
    security_invoker: bool


@dataclass
class TableMeta:
    oid: int
    name: QualifiedName
    columns: list[Column]
    unique_keys: list[UniqueKey]
    referenced_by: list[ForeignKey] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    functions: list[FunctionOver] = field(default_factory=list)

    @property
    def primary_key(self) -> tuple[str, ...]:
        for k in self.unique_keys:
            if k.primary and k.plain:
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
       a.attgenerated <> '',
       EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep
               JOIN pg_catalog.pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S'
               WHERE dep.classid = 'pg_catalog.pg_attrdef'::regclass AND dep.objid = d.oid),
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
# Unique indexes; expression and partial ones are listed too (reported as not aimed at).
_UNIQUE = """
SELECT i.indrelid::int, c.relname::text, i.indisprimary,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.n),
       i.indexprs IS NULL AND i.indpred IS NULL AND NOT (0 = ANY(i.indkey))
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indisunique AND i.indrelid = ANY(%(oids)s)
ORDER BY i.indisprimary DESC, c.relname
"""
# Foreign keys out of tenant tables, to any table; those that point at a tenant table
# are that table's referenced_by too.
_REFERENCES = """
SELECT con.conname::text, con.conrelid::int, con.confrelid::int, pn.nspname::text,
       pc.relname::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.n),
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, n)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.n)
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class pc ON pc.oid = con.confrelid
JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
WHERE con.contype = 'f' AND con.conrelid = ANY(%(oids)s) AND con.conparentid = 0
"""
# Views and materialized views that read the table, directly or through other views,
# selectable by the role; with their security_invoker option.
_VIEWS = """
WITH RECURSIVE over(base, view) AS (
    SELECT d.refobjid, r.ev_class
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_catalog.pg_rewrite'::regclass
    WHERE d.refobjid = ANY(%(oids)s) AND r.ev_class <> d.refobjid
  UNION
    SELECT o.base, r.ev_class
    FROM over o
    JOIN pg_catalog.pg_depend d ON d.refobjid = o.view
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_catalog.pg_rewrite'::regclass
    WHERE r.ev_class <> o.view
)
SELECT DISTINCT o.base::int, n.nspname::text, v.relname::text, v.relkind::text,
       EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = v.oid AND a.attname = %(col)s AND NOT a.attisdropped),
       coalesce('security_invoker=true' = ANY(v.reloptions)
                OR 'security_invoker=on' = ANY(v.reloptions), false)
FROM over o
JOIN pg_catalog.pg_class v ON v.oid = o.view
JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
WHERE v.relkind IN ('v', 'm') AND pg_catalog.has_table_privilege(%(role)s, v.oid, 'SELECT')
ORDER BY 2, 3
"""
# SECURITY DEFINER functions the runtime role may call that read the table: named in the
# body, or recorded as a dependency (BEGIN ATOMIC bodies have no prosrc). Candidates only:
# the probe calls them to see what they return.
_FUNCTIONS = """
SELECT p.oid::regprocedure::text, n.nspname::text, p.proname::text,
       ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM unnest(p.proargtypes) t),
       p.proretset, p.provolatile::text, p.prosrc,
       ARRAY(SELECT d.refobjid::int FROM pg_catalog.pg_depend d
             WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
               AND d.refclassid = 'pg_catalog.pg_class'::regclass)
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef AND p.prokind = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND pg_catalog.has_function_privilege(%(role)s, p.oid, 'EXECUTE')
  AND p.prorettype <> 'pg_catalog.trigger'::regtype
  -- install --signed's error path: reads only the key table, and only ever raises
  AND NOT (n.nspname = 'tenantguard_keys' AND p.proname = '_fail_signed')
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
    for relid, index, primary, cols, plain in conn.execute(_UNIQUE, {"oids": oids}).fetchall():
        metas[relid].unique_keys.append(UniqueKey(index, tuple(cols), primary, plain))
    for name, child, parent, schema, table, ccols, pcols in conn.execute(
        _REFERENCES, {"oids": oids}
    ).fetchall():
        ref = Reference(name, tuple(ccols), QualifiedName(schema, table), tuple(pcols))
        metas[child].references.append(ref)
        if parent in metas:
            fk = ForeignKey(name, child, tuple(ccols), tuple(pcols))
            metas[parent].referenced_by.append(fk)
    for relid, schema, view, kind, has_col, invoker in conn.execute(
        _VIEWS, {"oids": oids, "role": role, "col": tenant_column}
    ).fetchall():
        metas[relid].views.append(View(QualifiedName(schema, view), kind, has_col, invoker))
    funcs = conn.execute(_FUNCTIONS, {"role": role}).fetchall()
    for m in metas.values():
        for sig, schema, fname, args, retset, volatility, src, deps in funcs:
            if m.oid in deps or m.name.name in (src or ""):
                fn = FunctionOver(sig, schema, fname, tuple(args), retset, volatility == "v")
                m.functions.append(fn)
    return metas
