"""The one eviction policy of tenantguard's in-process caches."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["remember"]

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store *value* under *key* and return it; past *limit* entries the cache starts over.

    Clearing beats LRU bookkeeping on paths that run per request: lookups stay one dict
    access, and the entries still in use come back on their next miss. Safe under the
    GIL without a lock (each dict operation is atomic; a race only clears early).
    """
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
