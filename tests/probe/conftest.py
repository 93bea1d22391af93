"""A fresh database with tenantguard installed, per test (probe fixtures mutate schemas)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenantguard.admin import install
from tenantguard.core.sqlbuild import InstallSpec


@pytest.fixture
def fresh(server_dsn: str) -> Iterator:  # type: ignore[type-arg]
    from conftest import make_scratch

    gen = make_scratch(server_dsn)
    s = next(gen)
    with s.admin() as conn:
        install(conn, InstallSpec(app_role=s.app_role, owner_role=s.owner_role))
    yield s
    next(gen, None)
