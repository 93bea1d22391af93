"""TGP118 context-forgery: a forged tenant context is believed on a signed database."""

from __future__ import annotations

import time
from collections.abc import Iterator

from psycopg import sql

from tenantguard.core.signing import SigningKey, new_key, sign_context
from tenantguard.tooling.catalog import sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP118",
    name="context-forgery",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="On a signed install, a forged tenant context shows another tenant's rows",
    description="With install --signed, SQL on the app connection can still write the tenant "
    "setting, but only a context signed with a live key may count. The probe writes, as "
    "tenant A, forged contexts for tenant B (the plain id, B signed with a wrong secret, A's "
    "context with the tenant edited to B, B's context already expired, B signed under an "
    "unknown key id) and counts B's rows. Runs only where signing is installed: without it "
    "the plain setting is the contract (see docs/credentials.md).",
    anti_pattern="USING (tenant_id = current_setting('app.tenant_id')::bigint)  -- on a signed install",
    best_practice="tenantguard protect TABLE  -- policies read tenantguard_keys.signed_context",
)


def _forgeries(tp: TableProbe) -> list[tuple[str, str]]:
    p = tp.prober
    key = p.signing_key
    assert key is not None
    a, b, user = tp.tenant_a, tp.tenant_b, p.user_value
    later = int(time.time()) + 600
    mine = p.sign(a)
    out = [
        ("the plain tenant id", b),
        (
            "B's context signed with a wrong secret",
            sign_context(SigningKey(key.key_id, new_key().secret), b, user, expires_at=later),
        ),
        ("B's context under an unknown key id", sign_context(new_key(), b, user, expires_at=later)),
        ("B's context, expired a minute ago", p.sign(b, expires_at=int(time.time()) - 60)),
    ]
    if user is None and mine.endswith("." + a):
        out.append(("A's signed context with the tenant edited to B", mine[: -len(a)] + b))
    return out


def _fix(tp: TableProbe) -> str:
    """Drop the policies that read the setting as a plain tenant id, then protect the table
    (its policies call the verifying helpers)."""
    plain = f"current_setting('{tp.prober.setting}'"
    table = tp.ident.as_string(tp.prober.conn)
    drops = [
        f"DROP POLICY IF EXISTS {tp.quote(p.name)} ON {table};"
        for p in tp.table.policies
        if any(plain in (e or "") for e in (p.qual, p.with_check))
    ]
    head = sql_comment("policies that read the setting as a plain id trust a forged context:")
    return "\n".join([head, *drops, tp.table.protect_sql(tp.meta.primary_key)])


@REGISTRY.register(RULE)
def run(tp: TableProbe) -> Iterator[Finding]:
    p = tp.prober
    if p.signing_key is None or "SELECT" not in tp.table.privileges:
        return
    query = sql.SQL("SELECT count(*) FROM {} WHERE {}::text = %s").format(tp.ident, tp.col)
    # Control: B's own, correctly signed context reads B's rows through this same query;
    # if it does not, refusals of the forgeries prove nothing (reported, not counted safe).
    control, _ = tp.attempt(tp.tenant_b, query, [tp.tenant_b])
    for what, value in _forgeries(tp):
        outcome, evidence = tp.attempt(value, query, [tp.tenant_b], raw=True)
        if outcome.ok and int(outcome.scalar or 0) > 0:
            yield tp.leak(
                RULE,
                f"as tenant {tp.tenant_a}, {what} showed {outcome.scalar} row(s) of tenant "
                f"{tp.tenant_b}",
                evidence,
                fix=_fix(tp),
            )
            return
    if not control.ok or int(control.scalar or 0) == 0:
        why = control.error if not control.ok else "it read none of B's rows"
        tp.note("context forgery", f"tenant B's own signed context is refused here too ({why})")
