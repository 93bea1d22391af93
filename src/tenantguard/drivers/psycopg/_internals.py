"""The one seam between tenantguard and psycopg's private internals.

The request path is fast because, on the psycopg versions it was written and tested
against, it drives psycopg below its public API: the lean pipeline of ``_fastpath``
(cursor internals, the prepared-statement manager, the C result generators) and the
cursor reuse of ``_reuse`` (adapter maps, reference counts). Everything private they
touch is listed here and checked once, at import, by :func:`capability`:

* the psycopg series is one this was tested with (:data:`TESTED_SERIES`);
* every private name exists where it is expected;
* ``TENANTGUARD_FAST_PATH`` is not ``0`` (the suite runs a second time with it off).

When the check fails, :data:`FAST` is False and the drivers use psycopg's public API
only (``conn.pipeline()``, a new cursor per ``execute()``): the same messages, the same
single round trip, more client CPU. :data:`REASON` says why, and
``tenantguard.drivers.psycopg.fast_path()`` reports it.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import psycopg
from psycopg.types import TypesRegistry

__all__ = [
    "FAST",
    "NO_TRACEBACK",
    "REASON",
    "REGISTRY_CLASSES",
    "TEMPLATES",
    "TESTED_SERIES",
    "capability",
    "exact_prepared",
    "exact_query_cache",
    "watch_adapters",
]

#: psycopg (major, minor) series whose internals the fast path was tested against. The
#: CI's lowest-deps leg runs the floor in pyproject.toml (3.3.6), the main legs the newest.
TESTED_SERIES = ((3, 3),)
ENV_VAR = "TENANTGUARD_FAST_PATH"

#: Where a tenant connection keeps a guarded attribute's value (``row_factory`` in
#: ``conn.__dict__["_tg_attr_row_factory"]``: ``_connection_base.guarded_attribute``).
GUARDED_PREFIX = "_tg_attr_"

# Private names the fast path and cursor reuse read or call, by owner.
_CURSOR_NAMES = (
    "_start_query",
    "_convert_query",
    "_get_prepared",
    "_execute_send",
    "_send_prepare",
    "_check_results",
    "_set_results",
    "_reset",
    "_encoding",
    "_row_factory",
    "_closed",
    "_adapters",
    "_last_query",
    "_conn",
)
_CONNECTION_NAMES = ("_prepared", "_pipeline", "_autocommit", "_adapters", "_check_connection_ok")
_ADAPTERS_NAMES = (
    "_dumpers",
    "_loaders",
    "_dumpers_by_oid",
    "_register_loader_callback",
)
_PREPARE_MANAGER_NAMES = (
    "get",
    "maybe_add_to_cache",
    "validate",
    "clear",
    "maintain_gen",
    "prepare_threshold",
    "_to_flush",
)


def _series(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def capability() -> tuple[bool, str]:
    """(usable, why not): may the drivers use psycopg's internals on this install?"""
    if os.environ.get(ENV_VAR, "1") == "0":
        return False, f"{ENV_VAR}=0"
    try:
        series = _series(psycopg.__version__)
    except ValueError:
        return False, f"unrecognised psycopg version {psycopg.__version__!r}"
    if series not in TESTED_SERIES:
        return False, f"psycopg {psycopg.__version__} is not a tested series {TESTED_SERIES}"
    try:
        from psycopg import generators
        from psycopg._preparing import Prepare, PrepareManager
        from psycopg.errors import _NO_TRACEBACK  # noqa: F401
    except ImportError as exc:
        return False, f"psycopg internals missing: {exc}"
    for name in ("execute", "fetch_many"):
        if not hasattr(generators, name):
            return False, f"psycopg.generators.{name} is missing"
    if not {"NO", "SHOULD", "YES"} <= set(Prepare.__members__):
        return False, "psycopg._preparing.Prepare changed"
    probes: list[tuple[str, Any, tuple[str, ...]]] = [
        ("PrepareManager", PrepareManager(), _PREPARE_MANAGER_NAMES),
    ]
    for label, obj, names in probes:
        missing = [n for n in names if not hasattr(obj, n)]
        if missing:
            return False, f"{label} lacks {', '.join(missing)}"
    # Instance attributes of cursors and connections only exist on live objects: these
    # are checked on the class (methods) and by the drivers' tests (attributes).
    missing = [n for n in _CURSOR_NAMES if _missing_on(psycopg.Cursor, n)]
    if missing:
        return False, f"psycopg.Cursor lacks {', '.join(missing)}"
    missing = [n for n in _CONNECTION_NAMES if _missing_on(psycopg.Connection, n)]
    if missing:
        return False, f"psycopg.Connection lacks {', '.join(missing)}"
    from psycopg.adapt import AdaptersMap

    if any(_missing_on(AdaptersMap, n) for n in _ADAPTERS_NAMES):
        return False, "psycopg.adapt.AdaptersMap changed"
    return True, ""


def watch_adapters(conn: Any, hook: Any) -> bool:
    """Make every dumper, loader or type registered on ``conn.adapters`` call ``hook(conn)``
    first (which may refuse it, and marks the connection for replacement at checkin).

    What a lease registers there, the next lease's parameters and results would go through;
    the mark costs nothing on the clean checkin path. The connection's adapters map becomes
    a subclass of psycopg's that calls the hook before it registers (replacing a private
    attribute: only with the fast path). False when not watched.
    """
    if not FAST:
        return False
    from psycopg.adapt import AdaptersMap

    watched = _WatchedAdapters(conn._adapters)
    watched.types = _WatchedTypes(watched.types)
    ref = weakref.ref(conn)
    watched._tg_conn = watched.types._tg_conn = ref
    watched._tg_hook = watched.types._tg_hook = hook
    assert isinstance(watched, AdaptersMap)
    conn._adapters = watched
    return True


def exact_prepared(conn: Any, *, keep_threshold: bool = False) -> bool:
    """Key psycopg's prepared-statement cache of a new pool connection only by exact
    values: the query's bytes and each parameter's type oid (an ``int``).

    The cache lives as long as the connection, across leases, and every statement looks
    itself up in it: a key holding the caller's object (a dumper registered on a cursor,
    whose ``oid`` is an ``int`` subclass) would have its ``__eq__`` run inside a later
    lease's lookup (the twelfth review). A statement with such a key is refused before
    anything is sent. Without psycopg's internals the fallback is public: the connection
    prepares nothing (``prepare_threshold = None``), so psycopg keeps no keys, unless the
    pool's caller chose a threshold (*keep_threshold*: psycopg's own cache then, as asked).
    True when the exact cache is installed.
    """
    if not FAST:
        if not keep_threshold:
            conn.prepare_threshold = None
        return False
    old = conn._prepared
    new = _exact_keys_class()()
    new.prepare_threshold = old.prepare_threshold
    new.prepared_max = old.prepared_max
    conn._prepared = new
    return True


_EXACT_KEYS: list[type[Any]] = []


def _exact_keys_class() -> type[Any]:
    if _EXACT_KEYS:
        return _EXACT_KEYS[0]
    from psycopg._preparing import PrepareManager

    class ExactKeys(PrepareManager):
        @staticmethod
        def key(query: Any) -> tuple[bytes, tuple[int, ...]]:
            q, types = query.query, query.types
            if type(q) is not bytes or type(types) is not tuple:
                raise TypeError("tenantguard: a converted query is not exact bytes and a tuple")
            for oid in types:
                if type(oid) is not int:
                    raise TypeError(
                        f"tenantguard: a parameter's type oid is a {type(oid).__name__}, not an "
                        "int (a dumper registered with such an oid); nothing was sent: give "
                        "the dumper an int oid"
                    )
            return (q, types)

    _EXACT_KEYS.append(ExactKeys)
    return ExactKeys


def exact_query_cache() -> bool:
    """Make psycopg's process-wide query-conversion caches see only exact ``bytes``.

    psycopg converts a query's text once per (text, encoding) and keeps the result in an
    ``lru_cache`` shared by every connection of the process. A key that is a ``bytes``
    subclass (a query sent through psycopg's own cursor classes, on any connection)
    stays there, and the next lookup whose hash matches runs its ``__eq__`` and may get
    its SQL back: the fifteenth review had another tenant's later statement, in another
    thread, run the attacker's SQL under that tenant's binding. psycopg turns every query
    into bytes in one method before the cache sees it (``_ensure_bytes``); replaced by
    one that returns the same content as exact ``bytes``, no key in those caches can be
    the caller's object. An exact ``bytes`` query costs one type check (psycopg's own
    method makes two). Applied at import where psycopg has that method, independent of
    the fast path. True when applied.
    """
    try:
        from psycopg import sql as _sql
        from psycopg._queries import PostgresQuery
    except ImportError:
        return False
    current = PostgresQuery.__dict__.get("_ensure_bytes")
    if current is None:  # psycopg changed: nothing to replace
        return False
    if getattr(current, "_tg_exact", False):
        return True
    composable = _sql.Composable

    def _ensure_bytes(self: Any, query: Any) -> bytes:
        if type(query) is bytes:
            return query
        if isinstance(query, str):
            out = query.encode(self._tx.encoding)
        elif isinstance(query, composable):
            out = query.as_bytes(self._tx)
        else:
            out = query
        return out if type(out) is bytes else bytes(memoryview(out))

    _ensure_bytes._tg_exact = True  # type: ignore[attr-defined]
    _ensure_bytes._tg_original = current  # type: ignore[attr-defined]
    _ensure_bytes.__doc__ = current.__doc__
    PostgresQuery._ensure_bytes = _ensure_bytes  # type: ignore[method-assign]
    return True


def _mark(watched: Any) -> None:
    conn = watched._tg_conn() if watched._tg_conn is not None else None
    if conn is not None:
        watched._tg_hook(conn)


def _watched_classes() -> tuple[type[Any], type[Any]]:
    from psycopg.adapt import AdaptersMap
    from psycopg.types import TypesRegistry

    class WatchedAdapters(AdaptersMap):
        _tg_conn: Any = None
        _tg_hook: Any = None

        def register_dumper(self, cls: Any, dumper: Any) -> None:
            _mark(self)
            super().register_dumper(cls, dumper)

        def register_loader(self, oid: Any, loader: Any) -> None:
            _mark(self)
            super().register_loader(oid, loader)

    class WatchedTypes(TypesRegistry):
        _tg_conn: Any = None
        _tg_hook: Any = None

        def add(self, info: Any) -> None:
            _mark(self)
            super().add(info)

    return WatchedAdapters, WatchedTypes


def _missing_on(cls: type, name: str) -> bool:
    """*name* is neither a class attribute, a slot, an annotated attribute, nor one an
    ``__init__`` in the class's MRO assigns (it appears among that code's names)."""
    if hasattr(cls, name):
        return False
    for klass in cls.__mro__:
        if name in getattr(klass, "__slots__", ()) or name in getattr(klass, "__annotations__", {}):
            return False
        init = klass.__dict__.get("__init__")
        code = getattr(init, "__code__", None)
        if code is not None and name in code.co_names:
            return False
    return True


FAST, REASON = capability()
EXACT_QUERY_CACHE = exact_query_cache()

try:  # t-strings (psycopg >= 3.3): execute() hands them to psycopg untouched
    from psycopg._compat import Template

    TEMPLATES: tuple[type[Any], ...] = (Template,)
except ImportError:  # pragma: no cover - a psycopg without t-strings
    TEMPLATES = ()

#: Errors re-raised without the fast path's frames, as psycopg does.
NO_TRACEBACK: tuple[type[BaseException], ...] = ()
if FAST:
    from psycopg.errors import _NO_TRACEBACK as _NT

    NO_TRACEBACK = tuple(_NT)

_WatchedAdapters, _WatchedTypes = _watched_classes()
#: The classes a connection's types registry may have: psycopg's, or watched.
REGISTRY_CLASSES: frozenset[type[Any]] = frozenset({_WatchedTypes, TypesRegistry})


# -- what conn.wait() lets through (see _connection_base.screen_wait) -------------------
#
# Read, never called or replaced: the code objects of psycopg's generators that send no
# SQL text a caller shapes. Identity of code objects (read-only, unlike a generator's
# ``__name__``). A psycopg that renames or moves one only makes that operation close its
# connection at checkin (tests/test_attacks_round6.py catches it); so these apply with
# the fast path off too.


def _codes(owners: tuple[Any, ...], names: tuple[str, ...]) -> frozenset[Any]:
    found = set()
    for owner in owners:
        for name in names:
            code = getattr(getattr(owner, name, None), "__code__", None)
            if code is not None:
                found.add(code)
    return frozenset(found)


def _control_codes() -> tuple[frozenset[Any], frozenset[Any]]:
    from psycopg import generators

    conns = (psycopg.Connection, psycopg.AsyncConnection)
    return (
        _codes(conns, ("_commit_gen", "_rollback_gen"))
        # BEGIN/SAVEPOINT/RELEASE/COMMIT/ROLLBACK, names quoted as identifiers
        | _codes((psycopg.Transaction, psycopg.AsyncTransaction), ("_enter_gen", "_exit_gen"))
        | _codes(
            (psycopg.Pipeline, psycopg.AsyncPipeline),
            ("_enter_gen", "_exit_gen", "_sync_gen", "_fetch_gen", "_communicate_gen"),
        )
        | _codes(
            (psycopg.Copy, psycopg.AsyncCopy), ("_read_gen", "_read_row_gen", "_end_copy_out_gen")
        )
        | _codes((psycopg.Cursor, psycopg.AsyncCursor), ("_stream_fetchone_gen",))
        | _codes((generators,), ("notifies", "copy_to", "copy_end")),
        # transaction characteristics: no caller text, but the next lease would inherit them
        _codes(
            conns,
            (
                "_set_autocommit_gen",
                "_set_isolation_level_gen",
                "_set_read_only_gen",
                "_set_deferrable_gen",
            ),
        ),
    )


#: psycopg's own commands (let through for the lease's holder); the setters of transaction
#: characteristics (let through, and the connection is replaced at checkin).
CONTROL_CODES, SETTER_CODES = _control_codes()


def handler_lists(conn: Any) -> tuple[list[Any], list[Any]] | None:
    """psycopg's own lists of the connection's notice and notify handlers (the same list
    objects, mutated in place), or None where psycopg keeps them elsewhere. What they hold
    is what the next lease would call, however it was added."""
    lists = getattr(conn, "_notice_handlers", None), getattr(conn, "_notify_handlers", None)
    if all(type(x) is list for x in lists):
        return lists  # type: ignore[return-value]
    return None


def adapters_tables(conn: Any) -> tuple[Any, ...] | None:
    """The tables behind the connection's adapters map, or None where psycopg keeps them
    otherwise. psycopg copies a table on its first write, so a dumper, loader or type
    registered by any route (psycopg's base-class methods called on ``conn.adapters``
    included, which skip :func:`watch_adapters`) replaces one of them: the checkout
    compares them, by identity, with the ones recorded when the connection was pooled
    (:func:`adapters_changed`).
    """
    try:
        a = conn._adapters
        d, o, lo = a._dumpers, a._dumpers_by_oid, a._loaders
        p = conn._prepared
        return (
            d[_AUTO],
            d[_TEXT],
            d[_BINARY],
            o[0],
            o[1],
            lo[0],
            lo[1],
            a.types._registry,
            a.types,  # the registry object itself: a public attribute of the map
            p.prepare_threshold,  # psycopg's base-class setters skip tenantguard's mark
            p.prepared_max,
            p,  # the cache object (exact_prepared): replaced, its keys are unchecked
        )
    except (AttributeError, LookupError, TypeError):
        return None


def adapters_changed(conn: Any) -> bool:
    """A table of the connection's adapters map, its types registry, or psycopg's
    preparation settings are not the ones :func:`adapters_tables` recorded
    (``conn._tg_adapters``; the eleventh review replaced ``conn.adapters.types`` and set
    ``prepare_threshold`` through psycopg's base-class property)."""
    rec = conn._tg_adapters
    if rec is None:
        return False
    try:
        a = conn._adapters
        d, o, lo = a._dumpers, a._dumpers_by_oid, a._loaders
        return not (
            d[_AUTO] is rec[0]
            and d[_TEXT] is rec[1]
            and d[_BINARY] is rec[2]
            and o[0] is rec[3]
            and o[1] is rec[4]
            and lo[0] is rec[5]
            and lo[1] is rec[6]
            and a.types is rec[8]  # before anything is read through it (fourteenth review)
            and rec[8]._registry is rec[7]
            and (p := conn._prepared) is rec[11]
            # exact types before ``==``: a value set through psycopg's base-class property
            # is the lease's object, and this runs in the next lease (thirteenth review)
            and ((t := p.prepare_threshold) is None or type(t) is int)
            and t == rec[9]
            and type(m := p.prepared_max) is int
            and m == rec[10]
        )
    except (AttributeError, LookupError, TypeError):
        return True


def _pyformats() -> tuple[Any, Any, Any]:
    from psycopg.adapt import PyFormat

    return PyFormat.AUTO, PyFormat.TEXT, PyFormat.BINARY


_AUTO, _TEXT, _BINARY = _pyformats()
