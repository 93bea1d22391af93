"""Which pgbouncer the launcher runs, and what its version turns on (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantguard.testing.pgbouncer import ENV_VAR, PgBouncer, find_pgbouncer, pgbouncer_version


def fake(tmp_path: Path, name: str, first_line: str) -> str:
    """An executable that answers ``--version`` like a pgbouncer build does."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho '{first_line}'\necho 'libevent 2.1.12-stable'\n")
    path.chmod(0o755)
    return str(path)


def test_explicit_binary_then_variable_then_path(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    on_path = fake(tmp_path / "bin", "pgbouncer", "PgBouncer 1.18.0")
    from_env = fake(tmp_path, "env-pgbouncer", "PgBouncer 1.24.1")
    given = fake(tmp_path, "given-pgbouncer", "PgBouncer 1.22.0")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv(ENV_VAR, "")  # empty: unset
    assert find_pgbouncer() == on_path
    monkeypatch.setenv(ENV_VAR, from_env)
    assert find_pgbouncer() == from_env
    assert find_pgbouncer(given) == given


@pytest.mark.parametrize("where", ["argument", "variable"])
def test_an_explicit_binary_that_is_missing_is_an_error(tmp_path, monkeypatch, where) -> None:  # type: ignore[no-untyped-def]
    fake(tmp_path / "bin", "pgbouncer", "PgBouncer 1.18.0")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # never used instead
    missing = str(tmp_path / "nope" / "pgbouncer")
    monkeypatch.setenv(ENV_VAR, missing if where == "variable" else "")
    with pytest.raises(FileNotFoundError, match="is not an executable file"):
        find_pgbouncer(missing if where == "argument" else None)


def test_version_is_the_first_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert pgbouncer_version(fake(tmp_path, "a", "PgBouncer 1.24.1")) == (1, 24, 1)
    assert pgbouncer_version(fake(tmp_path, "b", "PgBouncer 1.25")) == (1, 25, 0)
    with pytest.raises(RuntimeError, match="is not a PgBouncer"):
        pgbouncer_version(fake(tmp_path, "c", "psql (PostgreSQL) 18.1"))
    with pytest.raises(RuntimeError, match="did not run"):
        pgbouncer_version(str(tmp_path / "absent"))


@pytest.mark.parametrize(
    ("version", "keeps"), [("1.18.0", False), ("1.20.1", False), ("1.21.0", True), ("1.24.1", True)]
)
def test_prepared_statements_follow_the_version(tmp_path, version, keeps) -> None:  # type: ignore[no-untyped-def]
    pgb = PgBouncer(
        "127.0.0.1", 5432, users=["u"], binary=fake(tmp_path, "pgb", f"PgBouncer {version}")
    )
    try:
        assert pgb.keeps_prepared is keeps
        assert pgb.info()["version"] == version
        ini = pgb._write_config().read_text().splitlines()
        assert ("max_prepared_statements = 100" in ini) is keeps
    finally:
        pgb.stop()
