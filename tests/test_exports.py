"""The public surface: __all__ matches what the package really exports (as httpx does)."""

from __future__ import annotations

import tenantguard


def test_all_is_sorted_and_complete() -> None:
    # under pytest the package is also assertion-rewritten ("@py_builtins", ...: not
    # identifiers) because it ships the pytest11 plugin, which loads tenantguard.pytest_plugin
    public = {n for n in dir(tenantguard) if n.isidentifier() and not n.startswith("_")}
    modules = {"core", "drivers", "errors", "admin", "tooling", "bench", "embedded", "cli", "demo"}
    modules |= {"pytest_plugin", "testing"}
    assert sorted(tenantguard.__all__) == tenantguard.__all__
    assert set(tenantguard.__all__) == public - modules


def test_every_error_has_a_code_and_a_hint_or_message() -> None:
    from tenantguard import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.TenantGuardError)
        assert cls.code.startswith("TG")
