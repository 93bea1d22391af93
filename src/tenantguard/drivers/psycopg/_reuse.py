"""``conn.execute()`` without a new cursor per statement, when that is unobservable.

psycopg's ``Connection.execute()`` makes a new cursor for every statement, and on
the request path that is the single largest cost tenantguard adds over a raw
connection with one reused cursor (measured: 37k instructions of a 236k point
select). A tenantguard connection keeps the cursor of its last ``execute()`` and
hands it out again only when no one could tell the difference:

* nobody else holds it: CPython's reference count says only the connection does
  (the test ``numpy.ndarray.resize(refcheck=True)`` uses), and at checkin no weak
  reference but psycopg's own points to it. A caller still reading the previous
  result, iterating it, or keeping it past the lease keeps its cursor, and the next
  ``execute()`` makes a new one, as psycopg does;
* it is open, and its adapters are still the connection's own: a loader or dumper
  registered on the cursor or on the connection since it was made means a new one;
* what a new cursor would have been given is given again: the connection's
  ``row_factory``, ``arraysize`` 1 and the text/binary format; and a new
  Transformer (new loaders) after a lease that may have changed settings.

Where the reference count means something else (free-threaded builds, PyPy) it is
never reused. At checkin the kept cursor drops its result, so no rows of one
tenant stay attached to an idle pooled connection.
"""

from __future__ import annotations

import sys
import sysconfig
from functools import partial
from sys import getrefcount
from typing import Any
from weakref import getweakrefcount, ref

from psycopg.adapt import PyFormat
from psycopg.pq import ConnStatus, Format
from psycopg.types import TypesRegistry

from tenantguard.drivers.psycopg import _internals
from tenantguard.drivers.psycopg._internals import REGISTRY_CLASSES

__all__ = ["ENABLED", "REFS_WHEN_FREE", "adopt", "release", "reusable"]

TEXT, BINARY = Format.TEXT, Format.BINARY
ROW_FACTORY = _internals.GUARDED_PREFIX + "row_factory"  # (see guarded_attribute)
CONNECTION_OK = ConnStatus.OK
AUTO, PTEXT, PBINARY = PyFormat.AUTO, PyFormat.TEXT, PyFormat.BINARY

# The reference counts mean what the checks below assume only on CPython with the GIL,
# and the psycopg internals only where _internals' capability check passed.
ENABLED: bool = (
    _internals.FAST
    and sys.implementation.name == "cpython"
    and not sysconfig.get_config_var("Py_GIL_DISABLED")
)


#: A kept cursor whose ``connection`` was read gets a new Transformer (tests turn it off:
#: a control).
FRESH_TRANSFORMER = True


class _Holder:
    __slots__ = ("__weakref__", "_tg_reused_cursor")
    _tg_reused_cursor: object


def _refs_when_free() -> int:
    """``getrefcount(conn._tg_reused_cursor)`` of an object only the attribute holds, measured.

    Counted on the attribute, never on a local name: how a local's reference shows in
    the count depends on the interpreter (CPython 3.14 pushes borrowed references of
    locals, one fewer than 3.11-3.13), so a constant would make a cursor held by one
    caller look free there. The checks below use this same expression.
    """
    h = _Holder()
    h._tg_reused_cursor = object()
    return getrefcount(h._tg_reused_cursor)


#: ``getrefcount(conn._tg_reused_cursor)`` when only the connection holds its kept cursor (2 on
#: CPython 3.11-3.13: the attribute and the call's argument).
REFS_WHEN_FREE = _refs_when_free()


def _own_weakref_refs() -> int:
    """``getrefcount`` of psycopg's own weak reference to a cursor nobody else holds.

    A cursor keeps ``partial(_loaders_changed, ref(self))`` as its adapters' loader
    callback; ``weakref.ref(cur)`` without a callback returns that same object.
    """
    h = _Holder()
    cb = partial(print, ref(h))
    return getrefcount(cb.args[0])


OWN_WEAKREF_REFS = _own_weakref_refs()


#: How many instance attributes psycopg gives a cursor's adapters map and its types
#: registry, read off the first cursor adopted (before it is handed out): a cursor whose
#: map or registry has more is never reused.
MAP_ATTRIBUTES = TYPES_ATTRIBUTES = -1


def reusable(conn: Any, binary: bool) -> Any:
    """The connection's kept cursor, made to look new, or None to make a new one."""
    # Counted before any local name holds it (None, with far more references, fails too).
    if getrefcount(conn._tg_reused_cursor) != REFS_WHEN_FREE:
        return None
    cur = conn._tg_reused_cursor
    mine = cur._adapters
    if (
        cur._closed
        # Nothing added on the cursor's map or its types registry (``cur.adapters.
        # get_dumper = planted``: psycopg's Transformer looks it up on the instance; the
        # fifteenth review's ran in the next lease), before anything is read through them.
        or len(mine.__dict__) > MAP_ATTRIBUTES
        or type(types := mine.types) is not TypesRegistry  # (its class before its dict)
        or len(types.__dict__) > TYPES_ATTRIBUTES
    ):
        return None
    # The cursor's adapters map still shares every table with the connection's: psycopg
    # copies a table on first write (on either side), so identity of the tables means
    # neither side registered anything since the cursor was made.
    theirs = conn._adapters
    md, cd = mine._dumpers, theirs._dumpers
    ml, cl = mine._loaders, theirs._loaders
    mo, co = mine._dumpers_by_oid, theirs._dumpers_by_oid
    if not (
        ml[0] is cl[0]
        and ml[1] is cl[1]
        and mo[0] is co[0]
        and mo[1] is co[1]
        and md[AUTO] is cd[AUTO]
        and md[PTEXT] is cd[PTEXT]
        and md[PBINARY] is cd[PBINARY]
        # The types registries' classes before anything is read through them: a planted
        # ``cur.adapters.types`` (a public attribute) ran in the next lease's reuse check
        # (the fourteenth review).
        and type(ct := theirs.types) in REGISTRY_CLASSES
        and types._registry is ct._registry
    ):
        return None
    if conn.pgconn.status != CONNECTION_OK:
        conn._check_connection_ok()  # raises psycopg's own error
    cur._row_factory = conn.__dict__[ROW_FACTORY]  # (conn.row_factory's own read)
    cur.arraysize = 1
    cur.format = BINARY if binary else TEXT
    return cur


def adopt(conn: Any, cur: Any) -> None:
    """*cur* (a new cursor that just ran its first statement, not yet handed out) is the
    connection's kept cursor: its adapters map's reference count now is the one that
    means "nobody else holds it" (the cursor, its Transformer, the argument)."""
    conn._tg_reused_cursor = cur
    conn._tg_adapters_refs = getrefcount(cur._adapters)
    global MAP_ATTRIBUTES, TYPES_ATTRIBUTES
    if MAP_ATTRIBUTES < 0:
        MAP_ATTRIBUTES = len(cur._adapters.__dict__)
        TYPES_ATTRIBUTES = len(cur._adapters.types.__dict__)


def release(conn: Any) -> None:
    """At checkin: the kept cursor forgets its result (or is forgotten, if held)."""
    if conn._tg_reused_cursor is None:
        return
    if getrefcount(conn._tg_reused_cursor) != REFS_WHEN_FREE or conn._tg_reused_cursor._closed:
        conn._tg_reused_cursor = None  # someone kept it past the lease: it is theirs now
        return
    cur = conn._tg_reused_cursor
    if (
        getweakrefcount(cur) != 1
        or getrefcount(cur._adapters._register_loader_callback.args[0]) != OWN_WEAKREF_REFS
        or getrefcount(cur._adapters) != conn._tg_adapters_refs
    ):
        # Weakly referenced (outside the reference count) by something of this lease, or
        # its adapters map (``cur.adapters``, public) kept: a new cursor per statement
        # would be gone, its map with it; a loader registered later on a kept map would
        # be made with the next tenant's result in hand (the sixth review).
        conn._tg_reused_cursor = None
        return
    # This tenant's result and query (its parameters) go now; psycopg's _reset() of the
    # rest runs when the cursor starts its next statement, before anything is read.
    cur._results = []
    cur.pgresult = cur._query = None
    cur._tx.set_pgresult(None)  # (set before its first statement was sent: see adopt)
    st = conn._tg_state
    exposed = (cur._tg_exposed or cur._tg_foreign) and FRESH_TRANSFORMER
    cur._tg_exposed = cur._tg_foreign = False
    if st is None or st.effects or st.slow_path or exposed:
        # psycopg keeps a cursor's Transformer while it runs the same query object, and
        # the Transformer's loaders and dumpers hold the time zone, DateStyle and
        # encoding of when they were made: settings of this lease (SET LOCAL in a
        # transaction, or SET, which the guard resets) must not reach the next one. A
        # fast-path statement's loaders are made after its implicit commit, with the
        # session's settings. And a cursor whose ``connection`` was read after its
        # statement started (``psycopg.Copy(cur)`` reads it, then fixes the
        # Transformer's row dumpers with ``set_types()``: the tenth review) gets a new
        # Transformer too.
        cur._last_query = None
