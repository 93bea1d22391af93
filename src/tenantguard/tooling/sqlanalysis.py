"""SQL analysis shared by the audit, the probe and the linter (PostgreSQL's grammar via pglast).

Parse trees are walked with pglast's own visitor machinery (:meth:`pglast.visitors.Visitor.
iterate`); PL/pgSQL bodies, which pglast returns as JSON, are walked by :func:`plpgsql_dicts`.
On top of those: the small readers every check needs (a column's name, a call's name, a
string literal, does an expression mention a column), policy-expression judgements (is it
pinned to the bound tenant, can it be true without the tenant) and function-body readers
(which statements a body runs, does it run dynamic SQL, how does it change a setting).
Nothing here touches a database: :mod:`tenantguard.tooling.catalog` loads the facts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pglast import ast, enums, parse_plpgsql, parse_sql
from pglast.parser import ParseError
from pglast.visitors import Continue, Skip, Visitor

__all__ = [
    "SCOPE_VIEWS",
    "call_name",
    "column_name",
    "fail_open_problems",
    "func_names",
    "function_statements",
    "is_pinned",
    "literal_text",
    "mentions_column",
    "parse_embedded",
    "parse_expr",
    "parse_statements",
    "plpgsql_dicts",
    "plpgsql_runs_dynamic_sql",
    "relations_in",
    "setting_changes",
    "settings_read",
    "statements_or_none",
    "string_literal",
    "view_filters_tenant",
    "walk",
    "walk_expr",
]

# --- walking ---------------------------------------------------------------------------


def walk(root: Any, *, into_sublinks: bool = True) -> Iterator[ast.Node]:
    """Every node at or below *root* (a node, a list/tuple of them, or None), breadth first.

    *into_sublinks* False: a sub-select (SubLink) below *root* is yielded but not entered.
    """
    if isinstance(root, list):
        root = tuple(root)
    if not isinstance(root, ast.Node | tuple):
        return
    steps = Visitor().iterate(root)
    try:
        _ancestors, node = steps.send(None)
        while True:
            yield node
            stop = not into_sublinks and isinstance(node, ast.SubLink) and node is not root
            _ancestors, node = steps.send(Skip if stop else Continue)
    except StopIteration:
        return


def parse_expr(expr: str | None) -> ast.Node | None:
    """The parse tree of a deparsed (policy) expression (None if absent or unparsable)."""
    stmts = _select(expr)
    if not stmts:
        return None
    stmt = stmts[0].stmt
    if not isinstance(stmt, ast.SelectStmt) or not stmt.targetList or len(stmt.targetList) != 1:
        return None
    val = stmt.targetList[0].val
    return val if isinstance(val, ast.Node) else None


def walk_expr(expr: str | None) -> list[ast.Node]:
    """All nodes of a deparsed (policy) expression (empty if it does not parse)."""
    return list(walk(_select(expr)))


def _select(expr: str | None) -> tuple[ast.RawStmt, ...]:
    if not expr:
        return ()
    try:
        return tuple(parse_sql(f"SELECT {expr}"))
    except ParseError:
        return ()


# --- small readers ---------------------------------------------------------------------


def column_name(node: Any) -> str | None:
    """The (last) name of a column reference, casts stripped; None for anything else."""
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.ColumnRef) and node.fields:
        return getattr(node.fields[-1], "sval", None)
    return None


def call_name(node: ast.FuncCall) -> tuple[str | None, str]:
    """(schema or None, name) of a function call."""
    parts = [getattr(p, "sval", "") for p in node.funcname or ()]
    return (parts[-2] if len(parts) > 1 else None, parts[-1] if parts else "")


def literal_text(node: Any) -> str | None:
    """The text of a string literal, casts stripped; None for anything else."""
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return node.val.sval
    return None


def string_literal(expr: str) -> str | None:
    """The text of *expr* when it is a plain string literal (``'ALTER TABLE ...'``)."""
    stmts = _select(expr)
    target: tuple[Any, ...] = (
        tuple(getattr(stmts[0].stmt, "targetList", None) or ()) if stmts else ()
    )
    val = getattr(target[0], "val", None) if len(target) == 1 else None
    if isinstance(val, ast.A_Const) and isinstance(val.val, ast.String):
        return val.val.sval
    return None


def mentions_column(expr: str | Any, column: str) -> bool:
    """Does *expr* (deparsed text, or parse tree) reference *column* as a column (by its
    last name, per the SQL grammar)?"""
    nodes = walk_expr(expr) if isinstance(expr, str) else walk(expr)
    return any(
        isinstance(n, ast.ColumnRef) and getattr((n.fields or (None,))[-1], "sval", None) == column
        for n in nodes
    )


def func_names(expr: str | None) -> list[tuple[str | None, str]]:
    """(schema or None, function name) for every function call in *expr*."""
    return [call_name(n) for n in walk_expr(expr) if isinstance(n, ast.FuncCall)]


def settings_read(expr: str | None) -> set[str]:
    """Names passed as a literal to current_setting(...) in *expr*."""
    out: set[str] = set()
    for n in walk_expr(expr):
        if isinstance(n, ast.FuncCall) and call_name(n)[1] == "current_setting" and n.args:
            text = literal_text(n.args[0])
            if text is not None:
                out.add(text)
    return out


def relations_in(root: Any) -> list[tuple[str | None, str]]:
    """(schema or None, name) of every table reference (RangeVar) under *root*, CTEs excluded."""
    nodes = list(walk(root))
    ctes = {n.ctename for n in nodes if isinstance(n, ast.CommonTableExpr)}
    out: list[tuple[str | None, str]] = []
    for n in nodes:
        if isinstance(n, ast.RangeVar) and n.relname:
            if n.schemaname is None and n.relname in ctes:
                continue
            ref = (n.schemaname, n.relname)
            if ref not in out:
                out.append(ref)
    return out


# --- policy expressions ----------------------------------------------------------------

# tenantguard's session-scope view (``protect --role-scope``): owned by the owner role, in
# a schema the runtime role cannot create in, it yields the session's tenants from the
# bound setting, a per-tenant login or a break-glass grant (tenantguard.admin._scope).
SCOPE_VIEWS = frozenset({("tenantguard", "session_scope")})

_IDENTITY_FUNCS = {
    enums.SQLValueFunctionOp.SVFOP_CURRENT_USER,
    enums.SQLValueFunctionOp.SVFOP_SESSION_USER,
    enums.SQLValueFunctionOp.SVFOP_USER,
    enums.SQLValueFunctionOp.SVFOP_CURRENT_ROLE,
}


@dataclass(frozen=True)
class _Pinning:
    column: str
    settings: frozenset[str]
    is_helper: Callable[[str | None, str], bool]
    distrust: frozenset[tuple[str | None, str]]  # sub-selects reading these decide nothing

    def context(self, node: Any) -> bool:
        """Does *node* compute the bound context: current_setting(<tenant/user setting>),
        a user helper function, or a sub-select over those / the session user; and no
        column of the row itself (outside sub-selects)?"""
        if isinstance(node, ast.SubLink):
            return self.trusted(node) and any(self.source(n) for n in walk(node.subselect))
        outer = list(walk(node, into_sublinks=False))
        if any(isinstance(n, ast.ColumnRef) for n in outer):
            return False
        subs = [n for n in walk(node) if isinstance(n, ast.SubLink)]
        return all(self.trusted(n) for n in subs) and any(self.source(n) for n in walk(node))

    def trusted(self, sublink: ast.SubLink) -> bool:
        return not any(r in self.distrust for r in relations_in(sublink.subselect))

    def source(self, node: ast.Node) -> bool:
        if isinstance(node, ast.FuncCall):
            schema, name = call_name(node)
            if name == "current_setting" and schema in (None, "pg_catalog"):
                first = literal_text(node.args[0]) if node.args else None
                return first is not None and first in self.settings
            return self.is_helper(schema, name)
        if isinstance(node, ast.RangeVar):
            return (node.schemaname, node.relname) in SCOPE_VIEWS
        return isinstance(node, ast.SQLValueFunction) and node.op in _IDENTITY_FUNCS

    def correlated(self, sublink: ast.SubLink) -> bool:
        """EXISTS (SELECT ... WHERE x.<column> = <outer>.<column> AND <context>)."""
        where = getattr(sublink.subselect, "whereClause", None)
        joins = any(
            isinstance(n, ast.A_Expr)
            and n.kind == enums.A_Expr_Kind.AEXPR_OP
            and getattr((n.name or (None,))[-1], "sval", None) == "="
            and column_name(n.lexpr) == self.column
            and column_name(n.rexpr) == self.column
            for n in walk(where)
        )
        return joins and self.trusted(sublink) and any(self.source(n) for n in walk(where))

    def pinned(self, node: Any) -> bool:
        if isinstance(node, ast.BoolExpr):
            args = list(node.args or ())
            if node.boolop == enums.BoolExprType.AND_EXPR:
                return any(self.pinned(a) for a in args)
            if node.boolop == enums.BoolExprType.OR_EXPR:
                return bool(args) and all(self.pinned(a) for a in args)
            return False
        if isinstance(node, ast.A_Expr):
            op = getattr((node.name or (None,))[-1], "sval", None)
            if op != "=":
                return False
            if node.kind == enums.A_Expr_Kind.AEXPR_OP:
                if column_name(node.lexpr) == self.column:
                    return self.context(node.rexpr)
                if column_name(node.rexpr) == self.column:
                    return self.context(node.lexpr)
                return False
            if node.kind == enums.A_Expr_Kind.AEXPR_OP_ANY:
                return column_name(node.lexpr) == self.column and self.context(node.rexpr)
            if node.kind == enums.A_Expr_Kind.AEXPR_IN and column_name(node.lexpr) == self.column:
                items = node.rexpr if isinstance(node.rexpr, tuple | list) else (node.rexpr,)
                return bool(items) and all(self.context(i) for i in items)
            return False
        if isinstance(node, ast.SubLink):
            if node.subLinkType == enums.SubLinkType.ANY_SUBLINK:
                return column_name(node.testexpr) == self.column and self.context(node)
            if node.subLinkType == enums.SubLinkType.EXISTS_SUBLINK:
                return self.correlated(node)
        return False


def is_pinned(
    node: Any,
    column: str,
    settings: frozenset[str],
    is_helper: Callable[[str | None, str], bool],
    distrust: frozenset[tuple[str | None, str]] = frozenset(),
) -> bool:
    """Is the boolean expression *node* true only for rows of the bound tenant?

    AND: one pinned conjunct suffices; OR: every branch must be pinned. Pinned:
    ``column = <context>`` (either side, casts allowed), ``column IN (SELECT ...)`` /
    ``= ANY (...)`` over the context, and ``EXISTS (SELECT ... WHERE m.column =
    t.column AND <context>)``; the context is the tenant or user setting
    (*settings*), a user helper function or the session user. Anything else
    (``IS NOT NULL``, ``= other_column``, constant lists, a bare flag) is not.
    Sub-selects reading a table in *distrust* (schema or None, name) pin nothing.
    """
    return _Pinning(column, settings, is_helper, distrust).pinned(node)


def fail_open_problems(expr: Any, column: str) -> list[str]:
    """Why a policy predicate (a parse tree) can be true without the tenant: always true,
    an OR branch that does not mention *column*, coalesce() giving the setting a default."""
    if expr is None:
        return []
    out = []
    if isinstance(expr, ast.A_Const) and isinstance(expr.val, ast.Boolean) and expr.val.boolval:
        out.append("always true")
    for n in walk(expr):
        if isinstance(n, ast.BoolExpr) and n.boolop == enums.BoolExprType.OR_EXPR:
            loose = [a for a in n.args or () if not mentions_column(a, column)]
            if loose:
                out.append("an OR branch does not restrict by the tenant column")
        elif isinstance(n, ast.CoalesceExpr) and any(
            isinstance(x, ast.FuncCall) and call_name(x)[1] == "current_setting" for x in walk(n)
        ):
            out.append("coalesce() gives the setting a default")
    return sorted(set(out))


def view_filters_tenant(
    query: Any,
    tenant_key: Callable[[str | None, str], str | None],
    pinned: Callable[[ast.Node, str], bool],
) -> bool:
    """Does the view body *query* keep to the bound tenant on its own? One plain SELECT
    (no set operation, no WITH) over exactly one relation, a tenant table, with a WHERE
    that pins that table's tenant column, and no other tenant table read anywhere (sub-
    selects included). *tenant_key*: (schema or None, name) -> that table's tenant
    column, None for a table that is not a tenant table; *pinned*: is a node pinned on a
    column. Only worth anything with ``security_barrier``: without it the planner may run
    a caller's (leaky) function on rows before the view's WHERE drops them."""
    if not isinstance(query, ast.SelectStmt) or query.withClause is not None:
        return False
    if query.op != enums.SetOperation.SETOP_NONE or len(query.fromClause or ()) != 1:
        return False
    (source,) = query.fromClause or (None,)
    if not isinstance(source, ast.RangeVar) or not source.relname:
        return False
    column = tenant_key(source.schemaname, source.relname)
    others = [r for r in relations_in(query) if r != (source.schemaname, source.relname)]
    if column is None or any(tenant_key(*r) is not None for r in others):
        return False
    return query.whereClause is not None and pinned(query.whereClause, column)


# --- function bodies (SQL and PL/pgSQL) -----------------------------------------------


def parse_statements(text: str) -> list[ast.Node]:
    """The statements of *text* (raises ParseError)."""
    return [s.stmt for s in parse_sql(text) if s.stmt is not None]


def statements_or_none(text: str | None) -> list[ast.Node] | None:
    """The statements of *text* (none for an empty or blank text), or None when it does
    not parse: the rules that read catalog text (a view's, a rule's, a pooler setting)
    treat that as "cannot tell", each in its own way."""
    if text is None or not text.strip():
        return []
    try:
        return parse_statements(text)
    except ParseError:
        return None


def plpgsql_dicts(
    tree: Any, *, prune: Callable[[dict[str, Any]], bool] | None = None
) -> Iterator[dict[str, Any]]:
    """Every JSON object of a PL/pgSQL parse tree (``pglast.parse_plpgsql``), depth first;
    the objects *prune* accepts are yielded but not entered."""
    stack: list[Any] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            if prune is None or not prune(item):
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def plpgsql_runs_dynamic_sql(definition: str) -> bool:
    """Does the PL/pgSQL function *definition* run SQL built at run time (EXECUTE, FOR ...
    IN EXECUTE, OPEN ... FOR EXECUTE, RETURN QUERY EXECUTE)? False when it does not parse."""
    try:
        tree = parse_plpgsql(definition)
    except ParseError:
        return False
    return any(
        "PLpgSQL_stmt_dynexecute" in d or "PLpgSQL_stmt_dynfors" in d or "dynquery" in d
        for d in plpgsql_dicts(tree)
    )


def parse_embedded(query: str, *, assignment: bool = True) -> list[ast.Node] | None:
    """The statements of one SQL expression embedded in PL/pgSQL: a statement, an
    expression (``SELECT`` prepended) or, with *assignment*, the right-hand side of
    ``target := expression``. None when none of those parse."""
    candidates = [query, f"SELECT {query}"]
    if assignment and ":=" in query:
        candidates.append("SELECT " + query.split(":=", 1)[1])
    for text in candidates:
        try:
            return parse_statements(text)
        except ParseError:
            continue
    return None


def function_statements(
    language: str, source: str | None, definition: str | None
) -> list[ast.Node] | None:
    """The parsed SQL statements of a function body; None when it cannot be analysed
    (another language, or a parse error). *source*: ``prosrc``; *definition*:
    ``pg_get_functiondef`` (where a BEGIN ATOMIC body and PL/pgSQL are read from)."""
    try:
        if language == "sql":
            if source and source.strip():
                return parse_statements(source)
            if definition:  # BEGIN ATOMIC: the body is in the definition
                return parse_statements(definition)
            return []
        if language == "plpgsql" and definition:
            tree = parse_plpgsql(definition)
        else:
            return None
    except ParseError:
        return None
    out: list[ast.Node] = []
    for d in plpgsql_dicts(tree):
        query = d.get("query")
        if isinstance(query, str):
            parsed = parse_embedded(query)
            if parsed is None:
                return None
            out.extend(parsed)
    return out


def setting_changes(stmts: list[ast.Node], setting: str) -> list[str]:
    """How *stmts* change *setting*: 'SET', 'SET LOCAL', 'set_config(..., false)' ..."""
    found: list[str] = []
    for n in walk(stmts):
        if (
            isinstance(n, ast.VariableSetStmt)
            and n.name == setting
            and n.kind
            in (enums.VariableSetKind.VAR_SET_VALUE, enums.VariableSetKind.VAR_SET_CURRENT)
        ):
            found.append("SET LOCAL" if n.is_local else "SET")
        elif isinstance(n, ast.FuncCall):
            schema, name = call_name(n)
            args = list(n.args or ())
            if (
                name == "set_config"
                and schema in (None, "pg_catalog")
                and len(args) == 3
                and literal_text(args[0]) == setting
            ):
                local = args[2]
                if isinstance(local, ast.A_Const) and isinstance(local.val, ast.Boolean):
                    found.append(f"set_config(..., {str(local.val.boolval).lower()})")
                else:
                    found.append("set_config(...)")
    return found
