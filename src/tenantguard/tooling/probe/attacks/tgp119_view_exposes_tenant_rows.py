"""TGP119 view-exposes-tenant-rows: a view read on its own shows other tenants' rows."""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from tenantguard.tooling.catalog import ExposingView, sql_comment
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.probe._target import TableProbe
from tenantguard.tooling.probe.attacks import REGISTRY

RULE = Rule(
    code="TGP119",
    name="view-exposes-tenant-rows",
    severity=Severity.CRITICAL,
    tool="probe",
    summary="A view shows other tenants' rows: it runs as an owner that bypasses row level "
    "security, reads a table outside the scan or out of the runtime role's reach, or calls a "
    "SECURITY DEFINER function",
    description="The audit reports views that run as their owner (TGA140), and functions that "
    "run as theirs; this attack proves what such a view actually shows. Every view the "
    "runtime role can read that reads a table with the tenant column (in any schema, whether "
    "the role may read that table itself or not) or calls a SECURITY DEFINER function, and "
    "that the table pass did not already attack (TGP109), is read as the runtime role with "
    "tenant A bound and with a tenant that owns nothing: a view with the tenant column must "
    "show no other tenant's rows; any other view must not answer the same, non-empty, for "
    "tenant A and a tenant that owns nothing. A view that could not be read (an error other "
    "than a privilege or policy refusal, a VOLATILE SECURITY DEFINER function without "
    "--call-volatile-functions, no tenant's rows to compare) is TGP190 or TGP191, never "
    "clean.",
    anti_pattern="CREATE VIEW app.contacts AS SELECT tenant_id, email FROM private.people;\n"
    "GRANT SELECT ON app.contacts TO app_user;  -- owned by postgres, private.people has no RLS",
    best_practice="CREATE VIEW ... WITH (security_invoker = true) over protected tables the "
    "runtime role may read; SECURITY INVOKER functions, or ones that filter on the tenant",
)


def reasons(tp: TableProbe, view: ExposingView) -> list[str]:
    """Why the view may show other tenants' rows, from the catalog."""
    out: list[str] = []
    if view.kind == "m":
        out.append("it is a materialized view: a copy with no row level security")
    elif not view.security_invoker:
        if view.owner_bypasses:
            out.append(f"it runs as its owner {view.owner!r}, who bypasses row level security")
        for b in view.bases:
            if b.owned_by_view_owner and b.rls and not b.forced:
                out.append(
                    f"it runs as its owner {view.owner!r}, who owns {b.name} without FORCE ROW "
                    "LEVEL SECURITY"
                )
    scanned = {t.oid for t in tp.prober.scanned}
    for b in view.bases:
        if b.oid not in scanned:
            out.append(f"it reads {b.name}, a table outside the scanned schemas or tables")
        elif not b.readable:
            out.append(f"it reads {b.name}, which the runtime role cannot read itself")
    out += [
        f"it calls the SECURITY DEFINER function {s} (owned by {o!r})" for s, o in view.definers
    ]
    return out


def fix_sql(tp: TableProbe, view: ExposingView) -> str:
    """Protect what it reads, let the runtime role read it under the policies, and make the
    view (and the functions it calls) run as the caller."""
    app = tp.quote(tp.prober.app_role)
    ident = view.name.ident.as_string(tp.prober.conn)
    out: list[str] = []
    for b in view.bases:
        if not (b.rls and b.forced):
            out.append(b.protect_sql())
        if view.kind == "v" and not b.schema_usage:
            out.append(f"GRANT USAGE ON SCHEMA {tp.quote(b.name.schema)} TO {app};")
        if view.kind == "v" and not b.readable:
            out.append(f"GRANT SELECT ON {b.name.ident.as_string(tp.prober.conn)} TO {app};")
    for signature, _ in view.definers:
        out.append(
            sql_comment(
                "runs as the caller, under the tables' policies (a function that must "
                "run as its owner filters on the tenant itself instead)"
            )
        )
        out.append(f"ALTER FUNCTION {signature} SECURITY INVOKER;")
    if view.kind == "m":
        out.append(f"REVOKE ALL ON {ident} FROM {app};  -- a materialized view has no policies")
    elif not view.security_invoker:
        out.append(
            sql_comment(
                "the view reads as the caller (PostgreSQL 15+): the runtime role needs "
                "SELECT on what it reads, under the tables' policies (granted above where missing)"
            )
        )
        out.append(f"ALTER VIEW {ident} SET (security_invoker = true);")
    return "\n".join(out)


@REGISTRY.register(RULE, on="view")
def run(tp: TableProbe) -> Iterator[Finding]:
    view = tp.view
    if view is None:  # pragma: no cover - only the view pass calls it
        return
    what = f"{'materialized view' if view.kind == 'm' else 'view'} {view.name}"
    if view.volatile_definers and not tp.prober.call_volatile:
        tp.note(
            what,
            f"not read: it calls the VOLATILE SECURITY DEFINER function "
            f"{', '.join(view.volatile_definers)} (pass --call-volatile-functions to read it "
            "inside the rolled-back transaction)",
        )
        return
    why = "; ".join(reasons(tp, view)) or "it reads tenant rows"
    col = tp.table.tenant_column
    if col:
        query = sql.SQL("SELECT count(*) FROM {} WHERE {c} IS NOT NULL AND {c}::text <> %s").format(
            view.name.ident, c=sql.Identifier(col)
        )
        for tenant in dict.fromkeys((tp.tenant_a, tp.absent_tenant)):
            outcome, evidence = tp.attempt(tenant, query, [tenant])
            if outcome.denied:
                continue  # refused by a privilege or a policy: fail-closed
            if not outcome.ok:
                tp.note(what, f"reading it with tenant {tenant} bound failed: {outcome.error}")
                return
            if int(outcome.scalar or 0) > 0:
                yield tp.leak(
                    RULE,
                    f"{what} shows {outcome.scalar} row(s) of other tenants with tenant {tenant} "
                    f"bound ({why})",
                    evidence,
                    obj=what,
                    fix=fix_sql(tp, view),
                )
                return
        return
    tenants = list(dict.fromkeys((tp.tenant_a, tp.tenant_b, tp.absent_tenant)))
    got = tp.same_for_all(view.name.ident, tenants)
    if isinstance(got, tuple):
        yield tp.leak(
            RULE,
            f"{what} returns the same {got[0]} row(s) for tenant {tp.tenant_a} and for a "
            f"tenant that owns nothing ({why})",
            got[1],
            obj=what,
            fix=fix_sql(tp, view),
        )
    elif got is not None and not got.denied:  # a refusal is fail-closed; not this
        tp.note(what, f"reading it failed: {got.error}")
