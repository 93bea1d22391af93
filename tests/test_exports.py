"""The public surface: __all__ matches what the package really exports (as httpx does)."""

from __future__ import annotations

import tenantguard


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in dir(tenantguard) if not name.startswith("_")}
    modules = {"core", "drivers", "errors", "admin", "tooling", "bench", "embedded", "cli", "demo"}
    assert sorted(tenantguard.__all__) == tenantguard.__all__
    assert set(tenantguard.__all__) == public - modules


def test_every_error_has_a_code_and_a_hint_or_message() -> None:
    from tenantguard import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.TenantGuardError)
        assert cls.code.startswith("TG")
