"""--setting is checked against what the policies and their helpers really read."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tenantguard.cli import main


@pytest.mark.parametrize("tool", ["audit", "probe"])
@pytest.mark.parametrize(
    ("setting", "said"),
    [("app.tenant_idd", "no policy or policy helper reads"), ("tenant", "not a custom setting")],
)
def test_a_setting_nothing_reads_is_a_usage_error(saas, tool: str, setting: str, said: str) -> None:  # type: ignore[no-untyped-def]
    base = [tool, "--dsn", saas.admin_dsn, "--app-role", saas.app_role]
    r = CliRunner().invoke(main, [*base, "--setting", setting])
    assert r.exit_code == 2, r.output
    assert said in r.output
    if "reads" in said:
        assert "app.tenant_id" in r.output  # the hint names what the helper reads


def test_the_setting_the_helper_reads_is_accepted(saas) -> None:  # type: ignore[no-untyped-def]
    base = ["audit", "--dsn", saas.admin_dsn, "--app-role", saas.app_role]
    r = CliRunner().invoke(main, [*base, "--setting", "app.tenant_id"])
    assert r.exit_code == 0, r.output
