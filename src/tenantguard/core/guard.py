"""The connection guard: what a clean pooled connection looks like, and what changed.

Sans-IO: the drivers run :data:`STATE_QUERY` and feed rows to :func:`snapshot`;
:func:`changed_kinds` compares a snapshot with the one taken when the connection
was opened. :class:`GuardStats` counts what the guard caught and for which tenant.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, LiteralString

__all__ = [
    "STATE_QUERY",
    "GuardEvent",
    "GuardStats",
    "SessionSnapshot",
    "changed_kinds",
    "snapshot",
]

# Parameters: tenant setting, user setting. Every probe reads backend-local state only.
# Every name is qualified with pg_catalog and no type is written unqualified: pg_temp is
# searched first for relations and types, so a temporary view or domain left by the
# lease being checked must not be able to run inside this query.
STATE_QUERY: LiteralString = """
SELECT pg_catalog.current_user()::pg_catalog.text,
       pg_catalog.session_user()::pg_catalog.text,
       pg_catalog.current_setting('search_path'),
       pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.<>) 0 AND (
           EXISTS (SELECT FROM pg_catalog.pg_class
                   WHERE relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())
           OR EXISTS (SELECT FROM pg_catalog.pg_type
                      WHERE typnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())
           OR EXISTS (SELECT FROM pg_catalog.pg_proc
                      WHERE pronamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())
           OR EXISTS (SELECT FROM pg_catalog.pg_operator
                      WHERE oprnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())
           OR EXISTS (SELECT FROM pg_catalog.pg_collation
                      WHERE collnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())
           OR EXISTS (SELECT FROM pg_catalog.pg_conversion
                      WHERE connamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())
           OR EXISTS (SELECT FROM pg_catalog.pg_ts_config
                      WHERE cfgnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())
           OR EXISTS (SELECT FROM pg_catalog.pg_ts_dict
                      WHERE dictnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema())),
       EXISTS (SELECT FROM pg_catalog.pg_listening_channels()),
       EXISTS (SELECT FROM pg_catalog.pg_locks
               WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
                 AND locktype OPERATOR(pg_catalog.=) 'advisory'::pg_catalog.text),
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql),
       EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE is_holdable),
       COALESCE(pg_catalog.current_setting(%s, true), ''::pg_catalog.text),
       COALESCE(pg_catalog.current_setting(%s, true), ''::pg_catalog.text),
       (SELECT pg_catalog.md5(pg_catalog.string_agg(
                   name OPERATOR(pg_catalog.||) '='::pg_catalog.text
                   OPERATOR(pg_catalog.||) setting OPERATOR(pg_catalog.||) ' '::pg_catalog.text
                   OPERATOR(pg_catalog.||) source, ',' ORDER BY name))
        FROM pg_catalog.pg_settings
        WHERE source OPERATOR(pg_catalog.<>) ALL ('{default,override}'::pg_catalog.text[])),
       ARRAY(SELECT s.setdatabase::pg_catalog.text OPERATOR(pg_catalog.||) ':'::pg_catalog.text
                    OPERATOR(pg_catalog.||) s.setrole::pg_catalog.text
                    OPERATOR(pg_catalog.||) ':'::pg_catalog.text OPERATOR(pg_catalog.||) c.cfg
             FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) AS c(cfg)
             WHERE (s.setrole OPERATOR(pg_catalog.=) 0::pg_catalog.oid
                    OR s.setrole OPERATOR(pg_catalog.=) (
                        SELECT oid FROM pg_catalog.pg_roles
                        WHERE rolname OPERATOR(pg_catalog.=) pg_catalog.session_user()))
               AND (s.setdatabase OPERATOR(pg_catalog.=) 0::pg_catalog.oid
                    OR s.setdatabase OPERATOR(pg_catalog.=) (
                        SELECT oid FROM pg_catalog.pg_database
                        WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()))
             ORDER BY 1)
"""


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    current_user: str
    session_user: str
    search_path: str
    temp_objects: bool
    listening: bool
    advisory_locks: bool
    prepared_statements: int
    hold_cursors: bool
    tenant_setting: str
    user_setting: str
    #: A digest of every setting whose value does not come from the defaults (its value
    #: and where it came from): a session-level SET, even one run inside a function.
    settings: str | None = None
    #: The login's and the database's persistent defaults (``pg_db_role_setting``):
    #: ``ALTER ROLE CURRENT_USER SET ...`` inside a function changes them for every new
    #: connection, and no reset undoes it.
    role_defaults: tuple[str, ...] | None = None


def snapshot(row: tuple[Any, ...]) -> SessionSnapshot:
    if len(row) > 11 and row[11] is not None:
        row = (*row[:11], tuple(row[11]), *row[12:])
    return SessionSnapshot(*row)


_FLAGS = (
    ("temp_objects", "temp_object"),
    ("listening", "listen"),
    ("advisory_locks", "advisory_lock"),
    ("hold_cursors", "hold_cursor"),
)


def changed_kinds(baseline: SessionSnapshot, now: SessionSnapshot) -> set[str]:
    """Contamination kinds: how *now* differs from the connection's *baseline*."""
    out: set[str] = set()
    if now.current_user != baseline.current_user or now.session_user != baseline.session_user:
        out.add("role")
    if now.search_path != baseline.search_path:
        out.add("search_path")
    for attr, kind in _FLAGS:
        if getattr(now, attr) and not getattr(baseline, attr):
            out.add(kind)
    if now.prepared_statements > baseline.prepared_statements:
        out.add("prepared_statement")
    if now.settings != baseline.settings:
        out.add("settings")
    if now.role_defaults != baseline.role_defaults:
        out.add("role_defaults")
    if now.tenant_setting != baseline.tenant_setting:
        out.add("setting:tenant")
    if now.user_setting != baseline.user_setting:
        out.add("setting:user")
    return out


@dataclass(frozen=True, slots=True)
class GuardEvent:
    """One contaminated checkin: who returned it, what it carried, what was done."""

    tenant: str | None
    kinds: tuple[str, ...]
    action: str  # "reset" or "discard"
    at: float


@dataclass(repr=False)
class GuardStats:
    """Counters for the checkin guard; read them from ``pool.guard_stats``."""

    # Every checkin passes here: counted by an itertools.count (one C call, atomic
    # under the GIL and in free-threaded builds) rather than a lock.
    _checkins: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    verified: int = 0
    contaminated: int = 0
    resets: int = 0
    discards: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_tenant: Counter[str] = field(default_factory=Counter)
    events: deque[GuardEvent] = field(default_factory=lambda: deque(maxlen=256))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def checkins(self) -> int:
        """Connections returned to the pool (clean or not)."""
        return int(repr(self._checkins)[6:-1])  # "count(N)": N taken so far, not advanced

    def count_checkin(self) -> None:
        next(self._checkins)

    def __repr__(self) -> str:
        return (
            f"GuardStats(checkins={self.checkins}, verified={self.verified}, "
            f"contaminated={self.contaminated}, resets={self.resets}, discards={self.discards}, "
            f"by_kind={self.by_kind!r}, by_tenant={self.by_tenant!r})"
        )

    def count_verified(self) -> None:
        with self._lock:
            self.verified += 1

    def record(self, tenant: str | None, kinds: set[str], action: str) -> GuardEvent:
        event = GuardEvent(tenant, tuple(sorted(kinds)), action, time.time())
        with self._lock:
            self.contaminated += 1
            self.by_kind.update(kinds)
            self.by_tenant[tenant or "?"] += 1
            if action == "reset":
                self.resets += 1
            else:
                self.discards += 1
            self.events.append(event)
        return event

    def as_dict(self) -> dict[str, Any]:
        return {
            "checkins": self.checkins,
            "verified": self.verified,
            "contaminated": self.contaminated,
            "resets": self.resets,
            "discards": self.discards,
            "by_kind": dict(self.by_kind),
            "by_tenant": dict(self.by_tenant),
        }
