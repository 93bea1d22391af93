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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

from tenantguard.tooling._pgast import walk
from tenantguard.tooling.findings import Finding, Location, Report, Rule, Severity

__all__ = ["LintContext", "Statement", "has_restrictive_guard", "lint_paths", "walk"]

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
    tenant_tables: dict[str, Statement] = field(default_factory=dict)  # name -> CREATE
    rls_enabled: dict[str, Statement] = field(default_factory=dict)  # name -> the ALTER
    rls_forced: dict[str, Statement] = field(default_factory=dict)
    policies: dict[str, list[Statement]] = field(default_factory=dict)

    def is_tenant_table(self, rel: Any) -> bool:
        return rel is not None and rel_name(rel) in self.tenant_tables


def rel_name(rel: Any) -> str:
    """``schema.name`` of a RangeVar (``public`` when unqualified)."""
    return f"{rel.schemaname or 'public'}.{rel.relname}"


def mentions_column(node: Any, column: str) -> bool:
    return any(
        isinstance(n, ast.ColumnRef) and getattr((n.fields or (None,))[-1], "sval", None) == column
        for n in walk(node)
    )


def has_restrictive_guard(ctx: LintContext, table: str) -> bool:
    """Do the files create a restrictive FOR ALL policy on *table* that mentions the tenant?"""
    for st in ctx.policies.get(table, []):
        p: Any = st.node
        if (
            not p.permissive
            and (p.cmd_name or "all") == "all"
            and mentions_column(p.qual, ctx.tenant_column)
        ):
            return True
    return False


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    before = data[:offset]
    line = before.count(b"\n") + 1
    col = offset - (before.rfind(b"\n") + 1) + 1
    return line, col


def _statements(path: str, text: str) -> list[Statement]:
    data = text.encode()
    out = []
    for raw in parse_sql(text):
        start = raw.stmt_location or 0
        # stmt_location points at the statement start, possibly before leading whitespace
        length = raw.stmt_len or (len(data) - start)
        chunk = data[start : start + length]
        lead = len(chunk) - len(chunk.lstrip())
        line, col = _line_col(data, start + lead)
        end_line, _ = _line_col(data, start + length)
        if raw.stmt is None:
            continue
        text_ = chunk.decode(errors="replace").strip()
        out.append(Statement(raw.stmt, path, line, col, end_line, text_))
    return out


def _build_model(ctx: LintContext) -> None:
    for st in ctx.statements:
        n = st.node
        if isinstance(n, ast.CreateStmt):
            cols = [e.colname for e in n.tableElts or () if isinstance(e, ast.ColumnDef)]
            if ctx.tenant_column in cols:
                ctx.tenant_tables[rel_name(n.relation)] = st
        elif isinstance(n, ast.AlterTableStmt) and n.relation is not None:
            name = rel_name(n.relation)
            for cmd in n.cmds or ():
                sub = getattr(cmd.subtype, "name", "")
                if sub == "AT_EnableRowSecurity":
                    ctx.rls_enabled.setdefault(name, st)
                elif sub == "AT_ForceRowSecurity":
                    ctx.rls_forced.setdefault(name, st)
        elif isinstance(n, ast.CreatePolicyStmt):
            ctx.policies.setdefault(rel_name(n.table), []).append(st)


RuleFn = Callable[[LintContext], Iterable[Finding]]


def _suppressions(path: str, text: str) -> list[Suppression]:
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
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
    rules: list[tuple[Rule, RuleFn]],
    tenant_column: str = "tenant_id",
    setting: str = "app.tenant_id",
    app_role: str | None = None,
) -> Report:
    """Lint SQL files (directories are searched for ``*.sql``, in name order)."""
    from tenantguard.tooling.lint.rules import META

    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.rglob("*.sql")) if p.is_dir() else [p])
    statements: list[Statement] = []
    suppressions: list[Suppression] = []
    findings: list[Finding] = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        suppressions += _suppressions(str(f), text)
        try:
            statements += _statements(str(f), text)
        except ParseError as exc:
            # pglast puts the 1-based character offset in args[1]
            pos = max(0, int(exc.args[1]) - 1) if len(exc.args) > 1 else 0
            line, col = _line_col(
                text[:pos].encode() + text[pos:].encode(), len(text[:pos].encode())
            )
            findings.append(
                Finding(
                    META["TGL100"],
                    str(f),
                    f"cannot parse: {exc.args[0] if exc.args else exc}",
                    location=Location(str(f), line, col),
                )
            )
    ctx = LintContext(statements, tenant_column, setting, app_role)
    _build_model(ctx)
    for _rule, fn in rules:
        findings.extend(fn(ctx))
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
    all_rules = [r for r, _ in rules] + list(META.values())
    return Report(
        "lint",
        " ".join(str(p) for p in files) or "(no files)",
        kept,
        all_rules,
        {"files": len(files), "statements": len(statements), "tenant_column": tenant_column},
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
