"""One self-contained HTML page (inline CSS, no scripts, everything escaped)."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from tenantguard.tooling.findings import Report, Severity
from tenantguard.tooling.report.json_report import scope, summary

_COLOR = {
    Severity.CRITICAL: "#b00020",
    Severity.HIGH: "#d9480f",
    Severity.MEDIUM: "#b08900",
    Severity.LOW: "#1c7ed6",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}.target{color:#555;margin-top:0}
.cards{display:flex;gap:1rem;margin:1.5rem 0}.card{flex:1;border-radius:8px;padding:1rem;color:#fff}
.card b{font-size:2rem;display:block}.finding{border:1px solid #ddd;border-left:6px solid;border-radius:6px;padding:.8rem 1rem;margin:.8rem 0}
.sev{font-weight:700;text-transform:uppercase;font-size:.8rem;padding:.1rem .4rem;border-radius:4px;color:#fff}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}pre{background:#f6f8fa;padding:.6rem;border-radius:4px;overflow-x:auto;white-space:pre-wrap}
.why{color:#444}.meta{color:#666;font-size:.9rem}.ok{font-size:1.2rem;color:#2b8a3e}
"""


def to_html(report: Report) -> str:
    e = html.escape
    counts = summary(report)
    cards = "".join(
        f'<div class="card" style="background:{_COLOR[s]}"><b>{counts[str(s)]}</b>{e(str(s))}</div>'
        for s in sorted(Severity, reverse=True)
    )
    items = []
    for f in sorted(report.findings, key=lambda f: (-f.level, f.rule.code, f.object)):
        c = _COLOR[f.level]
        where = f" at {e(f.location.path)}:{f.location.line}" if f.location else ""
        parts = [
            f'<div class="finding" style="border-left-color:{c}">',
            f'<span class="sev" style="background:{c}">{e(str(f.level))}</span> ',
            f"<b>{e(f.rule.code)}</b> {e(f.rule.name)} &mdash; <code>{e(f.object)}</code>{where}",
            f"<p>{e(f.message)}</p>",
        ]
        if f.rule.description:
            parts.append(f'<p class="why"><b>Why it leaks:</b> {e(f.rule.description)}</p>')
        if f.fix_sql:
            parts.append(f"<p><b>Fix:</b></p><pre>{e(f.fix_sql)}</pre>")
        if f.evidence:
            parts.append(f"<p><b>Evidence:</b></p><pre>{e(f.evidence)}</pre>")
        parts.append("</div>")
        items.append("".join(parts))
    meta = " &middot; ".join(f"{e(str(k))}: {e(str(v))}" for k, v in report.meta.items())
    body = "".join(items) or f'<p class="ok">No findings in {e(scope(report))}.</p>'
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tenantguard {e(report.tool)} report</title>
<style>{_CSS}</style></head><body>
<h1>tenantguard {e(report.tool)} report</h1>
<p class="target">{e(report.target)}</p>
<p class="meta">{meta} &middot; generated {when} &middot; {counts["total"]} finding(s); scope: {e(scope(report))}</p>
<div class="cards">{cards}</div>
{body}
</body></html>
"""
