"""Which statements can leave session state behind on a pooled connection.

Every statement that goes through a tenantguard connection is classified once per
distinct SQL text with PostgreSQL's own grammar (pglast), then cached. A statement
that can change session state (``SET`` without ``LOCAL``, ``set_config(.., false)``,
``LISTEN``, ``PREPARE``, temp objects, session advisory locks, ``WITH HOLD``
cursors, ``DO``/``CALL`` whose bodies cannot be seen) marks the connection, and the
checkin guard resets it. The clean path costs one dictionary lookup per statement.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

from tenantguard.core._bounded import remember
from tenantguard.core.rolecheck import SERVER_FILE_FUNCTIONS

__all__ = [
    "LOCAL_ONLY",
    "PERSISTENT",
    "REFUSED",
    "Effects",
    "StatementClassifier",
    "classify_sql",
    "refuse_persistent",
]

Effects = frozenset[str]
NONE: Effects = frozenset()
#: The effect of statements that change defaults beyond the session (``ALTER ROLE ...
#: SET``): the drivers refuse to send them on a tenant lease.
PERSISTENT = "persistent_setting"

#: Effects that end with the transaction: a pool that refuses session state sends them
#: (unless temporary objects are allowed: a local search_path can aim CREATE at pg_temp).
LOCAL_ONLY: Effects = frozenset({"local_search_path"})
#: The effect prefix of calls the drivers refuse to send on a tenant lease:
#: ``pg_terminate_backend`` / ``pg_cancel_backend`` (a login may signal its own role's
#: other backends: every other tenant's pooled connection) and ``setseed`` (the seed of
#: ``random()`` outlives the lease; no checkin query can see it), ``lastval`` / ``currval``
#: (they return the value a previous lease, another tenant's, last drew from a sequence),
#: and ``pg_sequence_last_value`` (the same value, read from the sequence itself, what the
#: ``pg_sequences`` view shows too: the sixteenth review).
REFUSED = "refused:"
_REFUSED_FUNCS = {
    "pg_terminate_backend",
    "pg_cancel_backend",
    "setseed",
    "lastval",
    "currval",
    "pg_sequence_last_value",
}
#: ``pg_sequences`` calls pg_sequence_last_value inside the view, out of the classifier's
#: sight: reading the view is refused as the call is, by name in SQL text too (the XML
#: export functions read a relation named in a string: the seventeenth review).
_REFUSED_RELATIONS = {"pg_sequences": "pg_sequence_last_value"}
_RELATION_TEXT_FUNCS = {"table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema"}
_SCHEMA_TEXT_FUNCS = {"schema_to_xml", "schema_to_xmlschema", "schema_to_xml_and_xmlschema"}
#: Built-ins that read or write files on the server (superuser-only unless granted; the pools
#: refuse a login that may run them, and this refuses the call).
SERVER_FILE = REFUSED + "server_file"
_SERVER_FILE_FUNCS = frozenset(SERVER_FILE_FUNCTIONS)  # what the role check refuses
#: The ``seed`` setting's assign hook calls setseed(): SET LOCAL seed, or set_config('seed',
#: ..., true), reseeds random() for the rest of the session (undoing the value at the end of
#: the transaction does not reseed), which setseed's refusal is there to stop.
_SEED_SETTING = "seed"
#: ``session_replication_role = replica`` switches off triggers and foreign-key checks for
#: the session or transaction (a grant of SET on it is all a login needs, PostgreSQL 15+):
#: a tenant's writes would skip what guards other tenants' rows. Refused in every mode.
REPLICATION_ROLE = REFUSED + "replication_role"
SETTING_NAME = REFUSED + "setting_name"
_REPLICATION_ROLE_SETTING = "session_replication_role"
#: Statements a runtime login never needs, which change what roles may do or what the
#: database is (the eighteenth review: a database-owner login granted itself CREATE back,
#: and ALTER DATABASE ... CONNECTION LIMIT 0 locked every tenant out). Refused in every mode.
PRIVILEGES = REFUSED + "privileges"
_PRIVILEGE_STMTS = (
    ast.GrantStmt,
    ast.GrantRoleStmt,
    ast.AlterDatabaseStmt,
    ast.AlterDefaultPrivilegesStmt,
    ast.DropOwnedStmt,
    ast.ReassignOwnedStmt,
)
#: Replication slots and logical decoding: a slot outlives the lease and keeps WAL, and
#: decoding reads every tenant's writes (row level security does not apply to the WAL).
REPLICATION = REFUSED + "replication"
_REPLICATION_FUNCS = re.compile(
    r"pg_(create|drop|copy)_\w*replication_slot|pg_logical_\w+|"
    r"pg_replication_slot_advance|pg_replication_origin_\w+"
)
#: Extension functions that run SQL text (contrib's tablefunc): crosstab's texts are
#: classified as SQL; connectby builds its SQL from names, and dblink runs SQL on another
#: session: code the classifier cannot see.
_CROSSTAB_FUNCS = {"crosstab", "crosstab2", "crosstab3", "crosstab4", "crosstab_hash"}
_OPAQUE_FUNCS = re.compile(r"connectby|dblink\w*|xpath_table")
#: COPY to or from a file or a program on the server: it runs as the server's operating
#: system user, beyond every tenant (a login needs a pg_*_server_* role, which the pools
#: refuse; this refuses the statement too).
SERVER_COPY = REFUSED + "server_copy"
# Built-ins that run SQL given as text, through SPI: what their text does (a session-level
# set_config, say) is invisible in the calling statement. A literal is classified as
# SQL; anything else is code the classifier cannot see.
_SQL_TEXT_FUNCS = {
    "query_to_xml": 0,
    "query_to_xmlschema": 0,
    "query_to_xml_and_xmlschema": 0,
    "ts_stat": 0,
    "ts_rewrite": 1,
}
# Settings that decide how the server splits SQL text into tokens: changed even for one
# statement, they make SQL text inside it (ts_stat's, say) mean something else to the
# server than to the classifier. Refused in every mode, locally too.
_LEXER_SETTINGS = {"standard_conforming_strings", "client_encoding", "backslash_quote"}
LEXER_SETTING = REFUSED + "lexer_setting"
_SESSION_LOCK_FUNCS = {
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
}
# PREPARE TRANSACTION turns the lease's transaction, with its locks, into one that outlives
# the lease, the connection and a server restart; COMMIT/ROLLBACK PREPARED end any of the
# login's, another tenant's too (their names are in pg_prepared_xacts). Refused everywhere.
_PREPARED_XACT_KINDS = {
    "TRANS_STMT_PREPARE",
    "TRANS_STMT_COMMIT_PREPARED",
    "TRANS_STMT_ROLLBACK_PREPARED",
}
PREPARED_TRANSACTION = REFUSED + "prepared_transaction"
_CURSOR_OPT_HOLD = 0x0020
# Settings that SET can touch without lasting past the transaction.
_TRANSACTION_SETTINGS = {"transaction", "session_characteristics", "transaction_isolation"}


def _walk(node: Any) -> Iterator[ast.Node]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            yield item
            for name in item:  # pglast nodes iterate over their attribute names
                stack.append(getattr(item, name))
        elif isinstance(item, tuple | list):
            stack.extend(item)


def _func_name(node: ast.FuncCall) -> str:
    parts = [getattr(p, "sval", "") for p in node.funcname or ()]
    return parts[-1].lower() if parts else ""


def _is_true_const(node: Any) -> bool:
    """A literal ``true`` (anything else, a bound parameter included, may be false)."""
    if isinstance(node, ast.A_Const) and not node.isnull:
        val = node.val
        if isinstance(val, ast.Boolean):
            return bool(val.boolval)
        if isinstance(val, ast.String):
            return (val.sval or "").lower() in {"t", "true", "on", "yes", "1"}
        return False
    if isinstance(node, ast.TypeCast):
        return _is_true_const(node.arg)
    return False


def _is_temp_schema(name: str | None) -> bool:
    """``pg_temp``, or a backend's own ``pg_temp_N`` / ``pg_toast_temp_N`` by name."""
    name = (name or "").lower()
    return name.startswith("pg_temp") or name.startswith("pg_toast_temp")


def _is_temp(rel: Any) -> bool:
    return isinstance(rel, ast.RangeVar) and (
        rel.relpersistence == "t" or _is_temp_schema(rel.schemaname)
    )


def _names_temp(names: Any) -> bool:
    """A qualified name list (functions, types, operators) whose schema is a temp one."""
    parts = [getattr(p, "sval", None) for p in names or ()]
    return len(parts) > 1 and _is_temp_schema(parts[-2])


# Statements that create functions, types, operators and the like: in a temporary schema
# they last for the session and can run inside a later lease's statements.
_CREATE_NAMED = (
    ast.CreateFunctionStmt,
    ast.CreateDomainStmt,
    ast.CompositeTypeStmt,
    ast.CreateEnumStmt,
    ast.CreateRangeStmt,
    ast.DefineStmt,
    ast.CreateConversionStmt,
)


def _node_effects(node: ast.Node) -> set[str]:
    out: set[str] = set()
    if isinstance(node, ast.VariableSetStmt):
        name = (node.name or "").lower()
        if name in _LEXER_SETTINGS:
            out.add(LEXER_SETTING)
        if name == _SEED_SETTING:
            out.add(REFUSED + "setseed")
        if name == _REPLICATION_ROLE_SETTING:
            out.add(REPLICATION_ROLE)
        if node.is_local and name == "search_path":
            # A transaction-local search_path can point unqualified CREATEs at pg_temp.
            out.add("local_search_path")
        if not node.is_local and name not in _TRANSACTION_SETTINGS:
            if name in {"role", "session_authorization"} or name == "session authorization":
                out.add("role")
            elif name == "search_path":
                out.add("search_path")
            else:
                out.add("setting:" + (name or "all"))
    elif isinstance(node, ast.CopyStmt):
        if node.is_program or node.filename is not None:
            out.add(SERVER_COPY)
    elif isinstance(node, ast.RangeVar):
        refused = _REFUSED_RELATIONS.get((node.relname or "").lower())
        if refused is not None and (node.schemaname or "pg_catalog").lower() == "pg_catalog":
            out.add(REFUSED + refused)
    elif isinstance(node, _PRIVILEGE_STMTS):
        out.add(PRIVILEGES)
    elif isinstance(node, ast.UpdateStmt):
        rel = node.relation
        if isinstance(rel, ast.RangeVar) and (rel.relname or "").lower() == "pg_settings":
            # The view's update rule runs set_config(name, setting, false) per row.
            out.add("setting:pg_settings")
    elif isinstance(node, ast.TransactionStmt):
        if getattr(node.kind, "name", "") in _PREPARED_XACT_KINDS:
            out.add(PREPARED_TRANSACTION)
    elif isinstance(node, ast.ListenStmt):
        out.add("listen")
    elif isinstance(node, ast.PrepareStmt | ast.DeallocateStmt):
        # DEALLOCATE too: it can drop a driver's prepared statement (or tenantguard's
        # binding) behind its back, and a PREPARE could then take the name.
        out.add("prepared_statement")
    elif isinstance(node, ast.DiscardStmt):
        out.add("discard")
    elif isinstance(
        node,
        ast.AlterRoleSetStmt | ast.AlterDatabaseSetStmt | ast.AlterSystemStmt | ast.AlterRoleStmt,
    ):
        # A role may change its own defaults and its own password: they outlive the
        # session and reach every new pooled connection (statement_timeout = 1ms, or no
        # new connection at all). Refused before sending.
        out.add(PERSISTENT)
    elif isinstance(node, _CREATE_NAMED):
        names = getattr(node, "funcname", None) or getattr(node, "domainname", None)
        names = names or getattr(node, "typeName", None) or getattr(node, "defnames", None)
        names = names or getattr(node, "conversion_name", None)
        if isinstance(node, ast.CompositeTypeStmt):
            if _is_temp(node.typevar):
                out.add("temp_object")
        elif _names_temp(names):
            out.add("temp_object")
    elif isinstance(node, ast.DeclareCursorStmt):
        if (node.options or 0) & _CURSOR_OPT_HOLD:
            out.add("hold_cursor")
    elif isinstance(node, ast.CreateStmt | ast.CreateSeqStmt | ast.ViewStmt):
        rel = getattr(node, "relation", None) or getattr(node, "sequence", None)
        if _is_temp(rel) or _is_temp(getattr(node, "view", None)):
            out.add("temp_object")
    elif isinstance(node, ast.IntoClause):
        if _is_temp(node.rel):
            out.add("temp_object")
    elif isinstance(node, ast.DoStmt | ast.CallStmt | ast.LoadStmt):
        out.add("opaque_code")
    elif isinstance(node, ast.A_Indirection | ast.ColumnRef):
        for call in _field_calls(node):
            out |= _node_effects(call)
    elif isinstance(node, ast.FuncCall):
        fname = _func_name(node)
        if fname == "set_config":
            args = node.args or ()
            setting = _literal(args[0]) if args else None
            lowered = (setting or "").lower()
            if setting is None:
                # A name the classifier cannot know (computed, or under a cast that may cut
                # it): it could be seed, session_replication_role or a lexer setting, which
                # are refused in every mode (the twenty-first review, in "reset" mode).
                out.add(SETTING_NAME)
            if lowered in _LEXER_SETTINGS:
                out.add(LEXER_SETTING)
            if lowered == _SEED_SETTING:
                out.add(REFUSED + "setseed")
            if lowered == _REPLICATION_ROLE_SETTING:
                out.add(REPLICATION_ROLE)
            if len(args) < 3 or not _is_true_const(args[2]) or setting is None:
                out.add("setting:set_config")
            elif lowered == "search_path":
                out.add("local_search_path")
        elif fname in _SESSION_LOCK_FUNCS:
            out.add("advisory_lock")
        elif fname in _REFUSED_FUNCS:
            out.add(REFUSED + fname)
        elif fname in _SERVER_FILE_FUNCS:
            out.add(SERVER_FILE)
        elif _REPLICATION_FUNCS.fullmatch(fname):
            out.add(REPLICATION)
        elif fname in _CROSSTAB_FUNCS:
            for i in range(len(node.args or ())):
                out |= _sql_text_effects(node, i)
        elif _OPAQUE_FUNCS.fullmatch(fname):
            out.add("opaque_code")
        elif fname in _RELATION_TEXT_FUNCS or fname in _SCHEMA_TEXT_FUNCS:
            out |= _named_relation_effects(node, fname in _SCHEMA_TEXT_FUNCS)
        elif fname in _SQL_TEXT_FUNCS:
            out |= _sql_text_effects(node, _SQL_TEXT_FUNCS[fname])
    return out


def _field_calls(node: ast.A_Indirection | ast.ColumnRef) -> list[ast.FuncCall]:
    """``(x).f``, ``(x).f.g`` and ``t.col.f`` as the calls PostgreSQL may read them as.

    PostgreSQL resolves a field selection that names no column as a call of a function
    with that one argument, any type: ``(pid).pg_terminate_backend`` ends a backend and
    ``($$...$$::text).ts_stat`` runs SQL text (the nineteenth review), and ``(x).f.g`` is
    ``g(f(x))``, ``(x).f.*`` every field of ``f(x)`` (the twentieth). pglast keeps each as
    one field selection; every name in it is checked as the call it may be, with what
    comes before it as the argument (a column that happens to be named like a refused
    function is refused too)."""
    calls: list[ast.FuncCall] = []
    if isinstance(node, ast.A_Indirection):
        items = list(node.indirection or ())
        for i, item in enumerate(items):
            if isinstance(item, ast.String):
                arg: Any = (
                    node.arg
                    if i == 0
                    else ast.A_Indirection(arg=node.arg, indirection=tuple(items[:i]))
                )
                calls.append(ast.FuncCall(funcname=(ast.String(sval=item.sval),), args=(arg,)))
    else:
        fields = list(node.fields or ())
        for i in range(1, len(fields)):
            if isinstance(fields[i], ast.String):
                arg = ast.ColumnRef(fields=tuple(fields[:i]))
                calls.append(ast.FuncCall(funcname=(ast.String(sval=fields[i].sval),), args=(arg,)))
    return calls


# Casts that hand a string on unchanged (no length: varchar(n), char(n), "char" and name
# cut it, and the server would run a prefix of what the classifier read: the
# twenty-first review hid `(k).pg_try_advisory_lock` behind `...lockXX` cut by
# varchar(63)). regclass and friends parse the name the classifier compares.
_KEEPING_CASTS = {"text", "varchar", "regclass", "regnamespace", "regproc", "regprocedure"}


def _literal(arg: Any) -> str | None:
    """The string *arg* is once every cast ran, when the classifier can know it: a string
    literal under casts that keep it whole; None for anything else."""
    while isinstance(arg, ast.TypeCast):
        type_name = arg.typeName
        if type_name is None:
            return None
        names = [getattr(n, "sval", "") for n in (type_name.names or ())]
        # Exactly a built-in in pg_catalog (pglast writes keyword types, varchar, that way):
        # an unqualified or quoted name resolves through search_path, where a temporary
        # domain named text over varchar(n) would cut the string when temporary objects are
        # allowed (the twenty-second review); such casts make the text opaque.
        if (
            len(names) != 2
            or names[0] != "pg_catalog"
            or names[1] not in _KEEPING_CASTS
            or type_name.typmods
            or type_name.arrayBounds
        ):
            return None
        arg = arg.arg
    if isinstance(arg, ast.A_Const) and isinstance(arg.val, ast.String):
        return arg.val.sval or ""
    return None


def _named_relation_effects(node: ast.FuncCall, schema: bool) -> Effects:
    """What an XML export reads when its first argument names a relation (or, with
    *schema*, every table and view of a schema): a refused relation is refused, and a
    name computed at run time is code the classifier cannot see."""
    args = node.args or ()
    literal = _literal(args[0]) if args else None
    if literal is None:
        return frozenset({"opaque_code"})
    text = literal.strip()
    if literal.isascii() and literal.isdigit():
        # regclass reads a string of digits as an oid: any relation, by number (the
        # twenty-second review read pg_sequences this way)
        return frozenset({"opaque_code"})
    if schema:
        if text.strip('"').lower() == "pg_catalog":
            return frozenset(REFUSED + f for f in _REFUSED_RELATIONS.values())
        return NONE
    last = text.rsplit(".", 1)[-1].strip().strip('"').lower()
    refused = _REFUSED_RELATIONS.get(last)
    return frozenset({REFUSED + refused}) if refused is not None else NONE


def _sql_text_effects(node: ast.FuncCall, index: int) -> Effects:
    """The effects of the SQL text a built-in runs through SPI (``query_to_xml``...)."""
    args = node.args or ()
    if len(args) <= index:
        return NONE  # another overload (ts_rewrite(tsquery, tsquery, tsquery))
    arg = args[index]
    literal = _literal(arg)
    if literal is not None:
        return classify_sql(literal)
    while isinstance(arg, ast.TypeCast):
        arg = arg.arg
    if isinstance(arg, ast.A_Const) and arg.isnull:
        return NONE
    return frozenset({"opaque_code"})  # text computed at run time


def classify_sql(text: str, params: bool = False) -> Effects:
    """The session-state effects *text* may have; ``frozenset()`` for a clean statement.

    With *params*, *text* is what a psycopg user passes along with parameters: psycopg
    replaces its placeholders (``%s``, ``%(name)s``, ``%%``) everywhere in the text, inside
    string literals and comments too, and the server reads the result. That result is
    what is classified, never the raw text.
    """
    if params:
        server_text = server_side_text(text)
        if server_text is None:
            return frozenset({"unparsed"})  # psycopg refuses it too: nothing is sent
        text = server_text
    try:
        stmts = parse_sql(text)
    except ParseError:
        return frozenset({"unparsed"})
    out: set[str] = set()
    for node in _walk(stmts):
        out |= _node_effects(node)
    return frozenset(out)


# psycopg's placeholder grammar: '%' then a name in parentheses and one character, or any
# one character ('%%' is a literal '%', '%s' / '%b' / '%t' placeholders, anything else an
# error). Applied to the whole text, as psycopg does.
_PLACEHOLDER = re.compile(r"%(?:\(([^)]+)\)(.)|(.))", re.DOTALL)


def server_side_text(text: str) -> str | None:
    """*text* with psycopg's placeholders as the server receives them (``$1``...), or None
    where psycopg would refuse the query (an unknown or incomplete placeholder, named and
    positional placeholders mixed)."""
    out: list[str] = []
    names: dict[str, int] = {}
    count = 0
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
        name, named_fmt, fmt = m.group(1), m.group(2), m.group(3)
        if name is None and fmt == "%":
            out.append("%")
            continue
        if (named_fmt or fmt) not in ("s", "b", "t"):
            return None
        if name is None:
            if names:
                return None
            count += 1
            out.append(f"${count}")
        else:
            if count:
                return None
            index = names.setdefault(name, len(names) + 1)
            out.append(f"${index}")
    if text.endswith("%") and pos < len(text):
        return None  # a trailing '%' with nothing after it: incomplete
    out.append(text[pos:])
    return "".join(out)


class StatementClassifier:
    """A bounded cache in front of :func:`classify_sql`; safe to share between threads."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._cache: dict[object, Effects] = {}
        #: ``cached(query)``: the effects of *query* sent as it is (no placeholders
        #: replaced), if classified before; else None. The cache's own lookup, in C.
        self.cached: Callable[[object], Effects | None] = self._cache.get
        self._max = max_entries

    def effects(self, query: str | bytes, params: bool = False) -> Effects:
        """The effects of *query* as sent: with *params*, after psycopg's placeholders."""
        key: object = query if not params else (query,)
        try:
            return self._cache[key]
        except KeyError:
            pass
        text = query.decode("utf-8", "replace") if isinstance(query, bytes) else query
        result = classify_sql(text, params)
        return remember(self._cache, key, result, self._max)


def refuse_persistent(effects: Effects) -> None:
    """Raise before any I/O when *effects* change defaults beyond the session, or call
    a function that reaches beyond the lease (:data:`REFUSED`)."""
    for effect in effects:
        if effect.startswith(REFUSED):
            from tenantguard.errors import UnsupportedOperation

            name = effect[len(REFUSED) :]
            if name == "lexer_setting":
                raise UnsupportedOperation(
                    "standard_conforming_strings, client_encoding and backslash_quote are not "
                    "changed on a tenant lease, not even locally: they change how the server "
                    "reads SQL text, and tenantguard checks statements as they read today; "
                    "nothing was sent",
                    hint="set them on the server, database or role, never per connection",
                )
            if name == "prepared_transaction":
                raise UnsupportedOperation(
                    "PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED are not sent on a "
                    "tenant lease: a prepared transaction keeps its locks past the lease, the "
                    "connection and a restart, and the login could end another tenant's; "
                    "nothing was sent",
                    hint="run two-phase commit from a dedicated connection outside the app pool",
                )
            if name == "server_copy":
                raise UnsupportedOperation(
                    "COPY to or from a file or program on the database server is not sent on a "
                    "tenant lease: it runs as the server's operating-system user, beyond every "
                    "tenant's rows; nothing was sent",
                    hint="use COPY ... TO STDOUT / FROM STDIN (cursor.copy()), which RLS filters",
                )
            if name == "setting_name":
                raise UnsupportedOperation(
                    "set_config() with a setting name the classifier cannot read (computed, or "
                    "under a cast) is not sent on a tenant lease: it could name seed, "
                    "session_replication_role or a setting that changes how SQL is read; "
                    "nothing was sent",
                    hint="write the setting's name as a plain string literal",
                )
            if name == "replication_role":
                raise UnsupportedOperation(
                    "session_replication_role is not changed on a tenant lease: 'replica' "
                    "switches off triggers and foreign-key checks that guard other tenants' "
                    "rows; nothing was sent",
                    hint="leave it to replication tools, outside the app pool",
                )
            if name == "privileges":
                raise UnsupportedOperation(
                    "GRANT, REVOKE, ALTER DATABASE, ALTER DEFAULT PRIVILEGES, DROP OWNED and "
                    "REASSIGN OWNED are not sent on a tenant lease: they change what roles may "
                    "do, for every tenant; nothing was sent",
                    hint="change privileges as an administrator, in migrations",
                )
            if name == "replication":
                raise UnsupportedOperation(
                    "replication slots and logical decoding are not used on a tenant lease: a "
                    "slot outlives the lease, and decoding reads every tenant's writes; nothing "
                    "was sent",
                    hint="run change data capture with a dedicated replication login",
                )
            if name == "server_file":
                raise UnsupportedOperation(
                    "functions that read or write files on the database server are not sent on "
                    "a tenant lease: the server's files (its write-ahead log) hold every "
                    "tenant's rows; nothing was sent",
                    hint="run them as an administrator, outside the app pool",
                )
            if name in ("lastval", "currval", "pg_sequence_last_value"):
                raise UnsupportedOperation(
                    f"{name}()"
                    + (" (or the pg_sequences view)" if name == "pg_sequence_last_value" else "")
                    + " is not sent on a tenant lease: it can return the value another "
                    "tenant's request last drew from a sequence; "
                    "nothing was sent",
                    hint="use INSERT ... RETURNING to read the values your statement generated",
                )
            raise UnsupportedOperation(
                f"{name}() is not sent on a tenant lease: "
                + (
                    "the seed of random() would outlive the lease; "
                    if name == "setseed"
                    else "it can stop other tenants' pooled connections of the same login; "
                )
                + "nothing was sent",
                hint="run it as an administrator, outside the app pool",
            )
    if PERSISTENT in effects:
        from tenantguard.errors import UnsupportedOperation

        raise UnsupportedOperation(
            "ALTER ROLE / ALTER DATABASE / ALTER SYSTEM is not sent on a tenant lease: a new "
            "default or password would reach every later connection of every tenant; nothing "
            "was sent",
            hint="change role and database defaults as an administrator, outside the app pool",
        )
