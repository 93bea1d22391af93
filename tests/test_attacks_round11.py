"""The eleventh adversarial review, each attack next to its control.

1. ``conn.adapters.types = Planted(conn.adapters.types)`` (a public attribute of the map;
   the planted registry shares the template's table, so the table identities matched):
   every cursor a later lease made called the planted ``__bool__``, in that lease's thread,
   which read its rows. Now the registry object itself is compared at checkout.
2. ``cur.fetchall = planted`` on the reused cursor: the next lease's ``fetchall()`` ran
   tenant 1's code and returned its forged rows. Tenant cursors now have no instance
   ``__dict__`` (as psycopg's own).
3. ``psycopg.Connection.prepare_threshold.fset(conn, 0)`` (psycopg's base-class property)
   skipped tenantguard's mark; the next tenant inherited it. Now compared at checkout.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types import TypesRegistry

from attack_payloads import DEFENDED, FAST_ONLY
from tenantguard import TenantPool, tenant
from tenantguard.drivers.psycopg import _internals, _pool, _pool_async
from tenantguard.drivers.psycopg._connection import TenantCursor

ROWS = "SELECT tenant_id, amount FROM app.invoices"


def _checkout_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the checkout does not compare the adapters and preparation settings."""
    for m in (_pool, _pool_async, _internals):
        monkeypatch.setattr(m, "adapters_changed", lambda conn: False)


@DEFENDED
def test_a_planted_types_registry_never_runs_in_the_next_lease(saas, monkeypatch, defended) -> None:  # type: ignore[no-untyped-def]
    if not defended:
        _checkout_unchecked(monkeypatch)
    loot: list[Any] = []

    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:

        class Planted(TypesRegistry):
            busy = False

            def __bool__(self) -> bool:  # psycopg: ``if template:`` in every new cursor's map
                if not Planted.busy and conn_ref:
                    Planted.busy = True
                    try:
                        loot.extend(conn_ref[0].execute(ROWS).fetchall())
                    except Exception:
                        pass
                    finally:
                        Planted.busy = False
                return True

        conn_ref: list[Any] = []
        with tenant(1), pool.connection() as conn:
            conn.adapters.types = Planted(conn.adapters.types)
            conn_ref.append(conn)
        loot.clear()
        with tenant(2), pool.connection() as conn:
            conn.cursor().execute("SELECT 1")
        kinds = pool.guard_stats.by_kind
    if defended:
        assert loot == [] and kinds["adapters"] == 1
    else:
        assert loot and {r[0] for r in loot} == {2}


@FAST_ONLY  # (cursor reuse is the fast path's)
@DEFENDED
def test_a_method_planted_on_the_reused_cursor_never_runs_in_the_next_lease(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:  # the control: a tenant cursor with an instance __dict__

        class Loose(TenantCursor):  # type: ignore[type-arg]
            pass

        monkeypatch.setattr(_pool, "TenantCursor", Loose)
    seen: list[Any] = []
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            cur = conn.execute("SELECT 1")

            def planted() -> list[Any]:
                seen.append("ran")
                return [("forged by tenant 1",)]

            if defended:
                with pytest.raises(AttributeError):
                    cur.fetchall = planted
            else:
                cur.fetchall = planted
            del cur
        with tenant(2), pool.connection() as conn:
            rows = conn.execute(ROWS).fetchall()
    if defended:
        assert seen == [] and {r[0] for r in rows} == {2}
    else:
        assert seen == ["ran"] and rows == [("forged by tenant 1",)]


@DEFENDED
def test_psycopgs_base_class_prepare_threshold_never_reaches_the_next_lease(  # type: ignore[no-untyped-def]
    saas, monkeypatch, defended
) -> None:
    if not defended:
        _checkout_unchecked(monkeypatch)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1) as pool:
        with tenant(1), pool.connection() as conn:
            psycopg.Connection.prepare_threshold.fset(conn, 0)  # type: ignore[attr-defined]
            psycopg.Connection.prepared_max.fset(conn, 1)  # type: ignore[attr-defined]
        with tenant(2), pool.connection() as conn:
            inherited = conn.prepare_threshold == 0 and conn.prepared_max == 1
    assert inherited is not defended
