"""The twenty-first adversarial review: the classifier read SQL text (and setting names)
under any cast, but ``varchar(n)``, ``char(n)``, ``"char"`` and ``name`` cut a string, so
the server ran a prefix of what was classified: ``...(k).pg_try_advisory_lockXX`` cast to
``varchar(n)`` left a session advisory lock on the pooled connection. And
``set_config('seed'::text, ...)`` was not recognised as the seed, so ``session_state="reset"``
sent it. Only casts that keep a string whole are looked through now; a set_config name the
classifier cannot read is refused (controls: the old reading).
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import Scratch
from tenantguard import TenantPool, tenant
from tenantguard.core import classify
from tenantguard.errors import UnsupportedOperation

INNER = "SELECT ''::tsvector WHERE (hashtext('jobs:tenant-2')::bigint).pg_try_advisory_lock"
CUT = f"SELECT (CAST($q${INNER}XX$q$ AS varchar({len(INNER)}))).ts_stat"  # the server runs INNER
SEED = "SELECT set_config('seed'::text, '0.5', true)"


def _any_cast(arg: Any) -> str | None:
    """The control: every cast looked through (what the classifier did before)."""
    while isinstance(arg, classify.ast.TypeCast):
        arg = arg.arg
    if isinstance(arg, classify.ast.A_Const) and isinstance(arg.val, classify.ast.String):
        return arg.val.sval or ""
    return None


def _locks(s: Scratch) -> int:
    with s.admin() as a:
        row: Any = a.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid IN "
            "(SELECT pid FROM pg_stat_activity WHERE usename = %s)",
            (s.app_role,),
        ).fetchone()
    return int(row[0])


def test_a_cut_string_is_text_the_classifier_cannot_see(saas: Scratch) -> None:
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c, pytest.raises(UnsupportedOperation):
            c.execute(CUT)
        assert _locks(saas) == 0


def test_control_a_cut_string_leaves_a_session_lock(
    saas: Scratch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classify, "_literal", _any_cast)
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, open=True) as pool:
        with tenant(1), pool.connection() as c:
            c.execute(CUT).fetchall()
        assert _locks(saas) == 1  # held by the idle pooled connection, for the next tenant


def test_a_cast_setting_name_is_read_through_in_reset_mode(saas: Scratch) -> None:
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state="reset") as pool:
        with tenant(1), pool.connection() as c, c.transaction():
            with pytest.raises(UnsupportedOperation, match="cannot read"):
                c.execute(SEED)  # ::text resolves through search_path: not read through
            with pytest.raises(UnsupportedOperation, match="cannot read"):
                c.execute("SELECT set_config('se' || 'ed', '0.5', true)")


def test_control_a_cast_seed_name_reseeds_the_next_tenants_random(
    saas: Scratch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classify, "_literal", lambda arg: None)  # only bare names, as before
    flagged = classify._node_effects
    monkeypatch.setattr(classify, "_node_effects", lambda n: flagged(n) - {classify.SETTING_NAME})
    with saas.app() as c:
        c.execute("SELECT setseed(0.5)")
        predicted = [c.execute("SELECT random()").fetchone() for _ in range(2)]
    with TenantPool(saas.app_dsn, min_size=1, max_size=1, session_state="reset") as pool:
        with tenant(1), pool.connection() as c, c.transaction():
            c.execute(SEED)
        with tenant(2), pool.connection() as c:
            got = [c.execute("SELECT random()").fetchone() for _ in range(2)]
    assert got == predicted
