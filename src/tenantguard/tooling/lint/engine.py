"""The migration linter's engine: parse files with pglast, run rules, apply suppressions.

A file is parsed with PostgreSQL's own grammar. Rules see every statement with its
location and a model of the tenant tables the files create (in order, across files),
and yield findings. Suppression: a comment on the statement's first line or the line
before it::

    -- tenantguard: ignore TGL101 reason: audit log, written by a trusted job only

A suppression without a reason is itself a finding (TGL198), and one that matches
nothing is reported as unused (TGL199).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pglast import ast, parse_plpgsql, parse_sql
from pglast.parser import ParseError, scan
from pglast.stream import RawStream

from tenantguard.errors import UsageError
from tenantguard.tooling.findings import Finding, Location, Report, Rule, Severity
from tenantguard.tooling.lint.baseline import Baseline
from tenantguard.tooling.lint.keys import (
    TableShape,
    TenantKey,
    parse_table_name,
    resolve_keys,
    root_candidates,
    table_shapes,
)
from tenantguard.tooling.registry import RuleCheck
from tenantguard.tooling.sqlanalysis import (
    is_pinned,
    parse_embedded,
    plpgsql_dicts,
    string_literal,
    walk,
)

__all__ = [
    "LintContext",
    "Statement",
    "has_restrictive_guard",
    "lint_paths",
    "pinned",
    "pinned_on",
]

# Suppression comments are comments, not SQL structure: a line scan is the right tool.
_SUPPRESS = re.compile(
    r"--\s*tenantguard:\s*ignore\s+([A-Z]{3}\d{3}(?:\s*,\s*[A-Z]{3}\d{3})*)(.*)$"
)


@dataclass
class Statement:
    node: ast.Node
    path: str
    line: int
    column: int
    end_line: int
    text: str
    in_do: bool = False  # a statement of a DO block (located at the DO)

    @property
    def location(self) -> Location:
        return Location(self.path, self.line, self.column, self.end_line)


@dataclass
class Suppression:
    path: str
    line: int
    codes: set[str]
    reason: str
    used: set[str] = field(default_factory=set)


@dataclass
class LintContext:
    """What rules see: every statement, the tenant tables created, the RLS facts."""

    statements: list[Statement]
    tenant_column: str
    setting: str
    app_role: str | None
    user_setting: str = "app.user_id"
    tenant_tables: dict[str, Statement] = field(default_factory=dict)  # name -> CREATE
    rls_enabled: dict[str, Statement] = field(default_factory=dict)  # name -> the ALTER
    rls_forced: dict[str, Statement] = field(default_factory=dict)
    policies: dict[str, list[Statement]] = field(default_factory=dict)
    keys: dict[str, TenantKey] = field(default_factory=dict)  # table -> its tenant key
    shapes: dict[str, TableShape] = field(default_factory=dict)  # tables the files create
    mapping: dict[str, str] = field(default_factory=dict)  # --tenant-column TABLE=COLUMN
    ambiguous: dict[str, list[str]] = field(default_factory=dict)

    def key_of(self, table: str) -> str:
        """The tenant column of *table*: mapped, inferred, or the default column."""
        key = self.keys.get(table)
        if key is not None:
            return key.column
        return self.mapping.get(table, self.tenant_column)


def rel_name(rel: Any) -> str:
    """``schema.name`` of a RangeVar (``public`` when unqualified)."""
    return f"{rel.schemaname or 'public'}.{rel.relname}"


def _name_parts(parts: Iterable[Any]) -> tuple[str, ...]:
    return tuple(getattr(p, "sval", "") or "" for p in parts)


def function_ref(n: ast.CreateFunctionStmt) -> str:
    """``"schema"."name"(argtype, ...)`` of a CREATE FUNCTION, quoted: what ALTER FUNCTION
    in a fix needs to name exactly that function (whatever overloads exist)."""
    from psycopg import sql

    name = ".".join(sql.Identifier(p).as_string() for p in _name_parts(n.funcname or ()))
    args = [
        RawStream()(p.argType)
        for p in n.parameters or ()
        if str(getattr(p.mode, "value", p.mode)) in ("i", "b", "v", "d")  # not OUT, TABLE
    ]
    return f"{name}({', '.join(args)})"


def statements_after(ctx: LintContext, st: Statement) -> Iterator[Statement]:
    """The statements of the files after *st* (in the order they run)."""
    seen = False
    for other in ctx.statements:
        if seen:
            yield other
        seen = seen or other is st


def later_alter_function(
    ctx: LintContext, st: Statement, n: ast.CreateFunctionStmt
) -> list[ast.DefElem]:
    """The options of every ALTER FUNCTION on the function *st* creates, after it."""
    parts = _name_parts(n.funcname or ())
    out: list[ast.DefElem] = []
    for other in statements_after(ctx, st):
        a: Any = other.node
        if not isinstance(a, ast.AlterFunctionStmt) or a.func is None:
            continue
        target = _name_parts(a.func.objname or ())
        if target == parts or ((len(target) == 1 or len(parts) == 1) and target[-1] == parts[-1]):
            out.extend(a.actions or ())
    return out


_HELPERS = {"current_tenant", "current_user_id"}


def pinned(ctx: LintContext, expr: Any, table: str) -> bool:
    """Is the policy expression true only for the bound tenant's rows? The audit's own
    judgement (``is_pinned``): ``tenant_id IS NOT NULL`` or ``tenant_id > 0`` mention the
    column and pin nothing. Schema-qualified user functions count as tenant helpers."""
    return pinned_on(ctx, expr, ctx.key_of(table))


def pinned_on(ctx: LintContext, expr: Any, column: str) -> bool:
    """:func:`pinned`, on a tenant column given by name."""

    def is_helper(schema: str | None, name: str) -> bool:
        return name in _HELPERS or (schema is not None and schema != "pg_catalog")

    settings = frozenset((ctx.setting, ctx.user_setting))
    return expr is not None and is_pinned(expr, column, settings, is_helper)


def has_restrictive_guard(ctx: LintContext, table: str) -> bool:
    """Do the files create a restrictive FOR ALL policy on *table* pinned to the tenant?"""
    for st in ctx.policies.get(table, []):
        p: Any = st.node
        if not p.permissive and (p.cmd_name or "all") == "all" and pinned(ctx, p.qual, table):
            return True
    return False


def _line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of the character *offset* in *text*."""
    before = text[:offset]
    line = before.count("\n") + 1
    col = offset - (before.rfind("\n") + 1) + 1
    return line, col


def _lead(chunk: str) -> int:
    """Characters before the statement's first token: whitespace and comments."""
    lead = len(chunk) - len(chunk.lstrip())
    if not chunk.startswith(("--", "/*"), lead):
        return lead
    for tok in scan(chunk):
        if tok.name not in ("SQL_COMMENT", "C_COMMENT"):
            return int(tok.start)
    return lead


def _statements(path: str, text: str) -> tuple[list[Statement], list[Statement]]:
    """The file's statements (DO blocks' statements included, located at the DO), and the
    DO blocks that run SQL the linter cannot read (EXECUTE of a non-literal)."""
    out: list[Statement] = []
    dynamic: list[Statement] = []
    search_path: list[str] = []
    for raw in parse_sql(text):
        # pglast's offsets count characters. stmt_location points at the statement start,
        # possibly before leading whitespace (and, with pglast 7, before leading comments)
        start = raw.stmt_location or 0
        length = raw.stmt_len or (len(text) - start)
        chunk = text[start : start + length]
        lead = _lead(chunk)
        line, col = _line_col(text, start + lead)
        end_line, _ = _line_col(text, start + length)
        if raw.stmt is None:
            continue
        text_ = chunk.strip()
        st = Statement(raw.stmt, path, line, col, end_line, text_)
        search_path = _qualify(raw.stmt, search_path)
        out.append(st)
        if isinstance(raw.stmt, ast.DoStmt):
            inner, opaque = _do_block(st)
            for node in inner:
                search_path = _qualify(node, search_path)
            out += [Statement(n, path, line, col, end_line, text_, in_do=True) for n in inner]
            if opaque:
                dynamic.append(st)
    return out, dynamic


def _qualify(node: Any, search_path: list[str]) -> list[str]:
    """Give unqualified table names the schema a ``SET search_path`` before them chose
    (so ``SET search_path = app; CREATE TABLE invoices`` is ``app.invoices``); returns the
    search_path in force after *node*."""
    if isinstance(node, ast.VariableSetStmt) and node.name == "search_path":
        if getattr(node.kind, "name", "") == "VAR_SET_VALUE":
            return [
                s for a in node.args or () if (s := getattr(a.val, "sval", None)) and s != "$user"
            ]
        return []  # RESET / SET ... TO DEFAULT
    if search_path:
        for n in walk(node):
            if isinstance(n, ast.RangeVar) and n.schemaname is None and n.relname:
                n.schemaname = search_path[0]
    return search_path


def _do_block(st: Statement) -> tuple[list[ast.Node], bool]:
    """The statements a PL/pgSQL DO block runs, and whether it also runs dynamic SQL
    (EXECUTE of anything but a string literal) that cannot be checked."""
    node: Any = st.node
    language = next(
        (getattr(o.arg, "sval", "") for o in node.args or () if o.defname == "language"),
        "plpgsql",
    )
    if language != "plpgsql":
        return [], True
    try:
        tree = parse_plpgsql(st.text)
    except ParseError:
        return [], True
    queries: list[str] = []
    opaque = False
    for item in plpgsql_dicts(tree, prune=lambda d: "PLpgSQL_stmt_dynexecute" in d):
        dyn = item.get("PLpgSQL_stmt_dynexecute")
        if dyn is not None:
            query = dyn.get("query", {}).get("PLpgSQL_expr", {}).get("query", "")
            literal = string_literal(query)
            if literal is None:
                opaque = True
            else:
                queries.append(literal)
            continue
        expr = item.get("PLpgSQL_expr")
        if isinstance(expr, dict) and isinstance(expr.get("query"), str):
            queries.append(expr["query"])
    nodes: list[ast.Node] = []
    for q in queries:
        nodes += parse_embedded(q, assignment=False) or []
    return nodes, opaque


def _build_model(ctx: LintContext) -> None:
    ctx.shapes = table_shapes((st.node for st in ctx.statements), rel_name)
    resolved = resolve_keys(ctx.shapes, ctx.tenant_column, ctx.mapping)
    ctx.keys, ctx.ambiguous = resolved.keys, resolved.ambiguous
    created: dict[str, tuple[Statement, list[str]]] = {}
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.CreateStmt):
            cols = [str(e.colname) for e in n.tableElts or () if isinstance(e, ast.ColumnDef)]
            created.setdefault(rel_name(n.relation), (st, cols))
    for table, key in ctx.keys.items():
        create, cols = created[table]
        if key.column in cols:  # else the ALTER that adds the key column, below
            ctx.tenant_tables[table] = create
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.AlterTableStmt) and n.relation is not None:
            name = rel_name(n.relation)
            for cmd in n.cmds or ():
                sub = getattr(cmd.subtype, "name", "")
                added = getattr(cmd.def_, "colname", None) if sub == "AT_AddColumn" else None
                if added is not None and added == ctx.key_of(name):
                    # ALTER TABLE ... ADD COLUMN tenant_id (on a table made before these files)
                    ctx.tenant_tables.setdefault(name, st)
                elif sub == "AT_EnableRowSecurity":
                    ctx.rls_enabled.setdefault(name, st)
                elif sub == "AT_ForceRowSecurity":
                    ctx.rls_forced.setdefault(name, st)
        elif isinstance(n, ast.CreatePolicyStmt):
            ctx.policies.setdefault(rel_name(n.table), []).append(st)


def _comments(text: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every comment, from PostgreSQL's own scanner: a suppression inside
    a string literal is not a comment. Falls back to lines when the scanner gives up."""
    try:
        tokens = [t for t in scan(text) if t.name in ("SQL_COMMENT", "C_COMMENT")]
    except ParseError:
        yield from enumerate(text.splitlines(), start=1)
        return
    for t in tokens:  # offsets in characters
        chunk = text[t.start : t.end + 1]
        first = text[: t.start].count("\n") + 1
        for i, line in enumerate(chunk.splitlines()):
            yield first + i, line


def _suppressions(path: str, text: str) -> list[Suppression]:
    out = []
    for i, line in _comments(text):
        m = _SUPPRESS.search(line)
        if m:
            codes = {c.strip() for c in m.group(1).split(",")}
            rest = m.group(2).strip()
            reason = rest.split("reason:", 1)[1].strip() if "reason:" in rest else ""
            out.append(Suppression(path, i, codes, reason))
    return out


def lint_paths(
    paths: Iterable[str | Path],
    *,
    rules: Sequence[RuleCheck[LintContext]],
    tenant_column: str = "tenant_id",
    setting: str = "app.tenant_id",
    app_role: str | None = None,
    user_setting: str = "app.user_id",
    tenant_columns: Mapping[str, str] | None = None,
    baseline: Baseline | None = None,
    write_baseline: str | Path | None = None,
) -> Report:
    """Lint SQL files (directories are searched for ``*.sql``, in name order).

    *tenant_columns* maps ``schema.table`` to its tenant column where it is not
    *tenant_column*; other keys are inferred from foreign keys (:mod:`.keys`). Raises
    :class:`UsageError` when the files create tables and none of them has a tenant key:
    a lint that matched nothing is not a clean result. With *baseline*, findings it
    records are left out and its entries that match nothing are reported (TGL195);
    *write_baseline* records this run's findings there first (then applies it).
    """
    from tenantguard.tooling.lint.rules import META

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(x for x in p.rglob("*") if x.is_file() and x.suffix.lower() == ".sql")
            if not found:
                raise UsageError(
                    f"no *.sql files under {p}", hint="point lint at migration files or folders"
                )
            files += found
        else:
            files.append(p)
    statements: list[Statement] = []
    suppressions: list[Suppression] = []
    findings: list[Finding] = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        if "\x00" in text:  # the parser stops at a NUL: everything after would go unchecked
            line, col = _line_col(text, text.index("\x00"))
            findings.append(
                Finding(
                    META["TGL100"],
                    str(f),
                    "contains a NUL byte (a binary file?): not checked",
                    location=Location(str(f), line, col),
                )
            )
            continue
        suppressions += _suppressions(str(f), text)
        try:
            parsed, dynamic = _statements(str(f), text)
        except ParseError as exc:
            # pglast gives the 1-based character offset, or nothing at the end of input
            offset = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else len(text)
            pos = max(0, int(offset) - 1)
            line, col = _line_col(text, pos)
            findings.append(
                Finding(
                    META["TGL100"],
                    str(f),
                    f"cannot parse: {exc.args[0] if exc.args else exc}",
                    location=Location(str(f), line, col),
                )
            )
            continue
        statements += parsed
        findings += [
            Finding(
                META["TGL197"],
                f"DO block at {st.path}:{st.line}",
                "runs SQL built at run time (EXECUTE of an expression): not checked",
                location=st.location,
            )
            for st in dynamic
        ]
    ctx = LintContext(statements, tenant_column, setting, app_role, user_setting)
    ctx.mapping = {parse_table_name(t): c for t, c in (tenant_columns or {}).items()}
    _build_model(ctx)
    if ctx.shapes and not ctx.tenant_tables and not ctx.ambiguous:
        raise UsageError(_nothing_matched(ctx), hint=_nothing_matched_hint(ctx))
    findings += [
        Finding(
            META["TGL196"],
            table,
            "cannot tell which column holds the tenant: " + "; ".join(candidates),
            fix_sql=f"-- lint ... --tenant-column {table}=COLUMN",
            location=_created_at(ctx, table),
        )
        for table, candidates in sorted(ctx.ambiguous.items())
    ]
    for rule in rules:
        findings.extend(rule.check(ctx))
    kept: list[Finding] = []
    for fnd in findings:
        sup = _match(fnd, suppressions)
        if sup is None:
            kept.append(fnd)
    for sup in suppressions:
        if not sup.reason:
            kept.append(
                Finding(
                    META["TGL198"],
                    f"{sup.path}:{sup.line}",
                    f"suppression of {', '.join(sorted(sup.codes))} gives no reason",
                    location=Location(sup.path, sup.line, 1),
                )
            )
        unused = sup.codes - sup.used
        if unused:
            kept.append(
                Finding(
                    META["TGL199"],
                    f"{sup.path}:{sup.line}",
                    f"suppression of {', '.join(sorted(unused))} matches nothing",
                    location=Location(sup.path, sup.line, 1),
                )
            )
    meta: dict[str, Any] = {
        "files": len(files),
        "statements": len(statements),
        "tenant_column": tenant_column,
        "tenant_keys": {
            t: {"column": k.column, "source": k.source, "reason": k.reason}
            for t, k in sorted(ctx.keys.items())
        },
        "shared_tables": sorted(t for t in ctx.shapes if t not in ctx.tenant_tables),
        "unmatched_mappings": sorted(t for t in ctx.mapping if t not in ctx.shapes),
    }
    anchors: dict[tuple[str, int], str] = {}
    for st in statements:  # a DO block's statements share its line: the DO comes first
        anchors.setdefault((st.path, st.line), _canonical(st))
    if write_baseline is not None:
        baseline = Baseline.record(write_baseline, kept, anchors)
    if baseline is not None:
        kept, stale = baseline.apply(kept, anchors)
        kept += stale
        meta["baseline"] = {
            "file": baseline.path,
            "matched": baseline.matched,
            "stale": len(stale),
        }
    all_rules = [r.rule for r in rules] + list(META.values())
    return Report("lint", " ".join(str(p) for p in files) or "(no files)", kept, all_rules, meta)


def _canonical(st: Statement) -> str:
    """The statement as PostgreSQL's grammar sees it: no comments, no layout."""
    try:
        return str(RawStream()(st.node))
    except Exception:  # a node pglast cannot print: fall back to the text
        return " ".join(st.text.split())


def _created_at(ctx: LintContext, table: str) -> Location | None:
    st = next(
        (
            s
            for s in ctx.statements
            if isinstance(s.node, ast.CreateStmt) and rel_name(s.node.relation) == table
        ),
        None,
    )
    return st.location if st else None


def _nothing_matched(ctx: LintContext) -> str:
    tables = sorted(ctx.shapes)
    shown = ", ".join(tables[:6]) + (f" and {len(tables) - 6} more" if len(tables) > 6 else "")
    return (
        f"none of the {len(tables)} tables these files create ({shown}) has a tenant column "
        f"{ctx.tenant_column!r}, and no tenant key could be inferred: nothing to check"
    )


def _nothing_matched_hint(ctx: LintContext) -> str:
    roots = root_candidates(ctx.shapes)
    example = ""
    if roots:
        shape = ctx.shapes[roots[0]]
        key = shape.primary_key[0] if len(shape.primary_key) == 1 else "COLUMN"
        example = (
            f"; if {roots[0]} is the tenant root table, --tenant-column {roots[0]}={key} "
            "lets lint infer the tables whose foreign keys reference it"
        )
    return (
        "pass the tenant column (--tenant-column COLUMN) or per-table keys "
        "(--tenant-column SCHEMA.TABLE=COLUMN, repeatable, or tenant-columns in "
        f"tenantguard.toml or the tool.tenantguard section of pyproject.toml){example}"
    )


def _match(f: Finding, sups: list[Suppression]) -> Suppression | None:
    if f.location is None:
        return None
    for s in sups:
        if (
            s.path == f.location.path
            and f.rule.code in s.codes
            and s.line in (f.location.line, f.location.line - 1)
        ):
            if s.reason:  # only a suppression with a reason suppresses
                s.used.add(f.rule.code)
                return s
            s.used.add(f.rule.code)
    return None


def finding(
    rule: Rule,
    st: Statement,
    obj: str,
    message: str,
    fix: str | None = None,
    severity: Severity | None = None,
) -> Finding:
    return Finding(rule, obj, message, fix_sql=fix, location=st.location, severity=severity)
