"""TGL101 table-without-rls: a tenant table created without ENABLE + FORCE + a policy."""

from __future__ import annotations

from collections.abc import Iterator

from tenantguard.core.names import QualifiedName
from tenantguard.core.sqlbuild import ProtectSpec, protect_statements, render
from tenantguard.errors import TenantGuardError
from tenantguard.tooling.findings import Finding, Rule, Severity
from tenantguard.tooling.lint.engine import LintContext, finding
from tenantguard.tooling.lint.rules import REGISTRY
from tenantguard.tooling.lint.severity import as_audit

RULE = Rule(
    code="TGL101",
    name="table-without-rls",
    severity=Severity.CRITICAL,
    tool="lint",
    summary="Tenant table created without ENABLE + FORCE row level security and a policy",
    description="A table with the tenant column must get RLS in the same migration that creates "
    "it; otherwise it ships unprotected and any query with a forgotten WHERE leaks. Protection "
    "added only by a later migration is reported as medium: the table is exposed in between. "
    "Rated as the audit rates the worst missing part: no ENABLE critical (TGA101), only FORCE "
    "or only a policy missing medium (TGA102, TGA103).",
    anti_pattern="CREATE TABLE app.invoices (tenant_id bigint NOT NULL, ...);",
    best_practice="CREATE TABLE app.invoices (...);\nALTER TABLE app.invoices ENABLE ROW LEVEL "
    "SECURITY;\nALTER TABLE app.invoices FORCE ROW LEVEL SECURITY;\nCREATE POLICY ...;",
)


@REGISTRY.register(RULE)
def check(ctx: LintContext) -> Iterator[Finding]:
    for name, st in ctx.tenant_tables.items():
        parts = (
            ("ENABLE ROW LEVEL SECURITY", ctx.rls_enabled.get(name)),
            ("FORCE ROW LEVEL SECURITY", ctx.rls_forced.get(name)),
            ("a policy", next(iter(ctx.policies.get(name, [])), None)),
        )
        fix = protect_fix(ctx, name)
        missing = [what for what, where in parts if where is None]
        if missing:
            # Rated as the audit rates the worst missing part (lint.severity): no ENABLE,
            # every tenant's rows for a forgotten WHERE; FORCE or the policy alone, no leak
            # to the runtime role itself (the owner bypasses; deny-all hides every row).
            code = next(c for c, (w, _) in zip(_AUDIT_PARTS, parts, strict=True) if w in missing)
            yield finding(
                RULE,
                st,
                name,
                f"created without {', '.join(missing)}{_WHY[code]}",
                fix=fix,
                severity=as_audit(code),
            )
            continue
        later = sorted({where.path for _, where in parts if where and where.path != st.path})
        if later:  # protected, but only by a later migration: exposed in between
            yield finding(
                RULE,
                st,
                name,
                f"created here but protected only in {', '.join(later)}: between the two "
                "migrations (or if the later one fails) the table has no RLS",
                fix="-- move ENABLE / FORCE / CREATE POLICY into the migration that creates it",
                severity=Severity.MEDIUM,
            )


_AUDIT_PARTS = ("TGA101", "TGA102", "TGA103")  # ENABLE, FORCE, a policy: worst first
_WHY = {
    "TGA101": ": no policy applies, a query with a forgotten WHERE reaches every tenant's rows",
    "TGA102": ": the table owner bypasses the policies (as the audit's TGA102 rates it: the "
    "runtime role reaches other tenants' rows only as the owner, itself critical)",
    "TGA103": ": RLS without a permissive policy hides every row (broken, not exposed; as "
    "the audit's TGA103)",
}

# pglast names built-in types by their internal names
_TYPES = {
    "int8": "bigint",
    "int4": "integer",
    "serial8": "bigint",
    "bigserial": "bigint",
    "serial": "integer",
    "serial4": "integer",
    "varchar": "text",
}


def protect_fix(ctx: LintContext, name: str) -> str:
    """What ``tenantguard protect`` runs on *name*, as SQL to append (safe to run again); a
    comment when the files do not say the table's columns."""
    column = ctx.key_of(name)
    shape = ctx.shapes.get(name)
    if shape is None:
        return f"-- tenantguard protect {name} --dry-run  (prints the SQL)"
    written = shape.types.get(column, "")
    try:
        schema, table = name.split(".", 1)
        spec = ProtectSpec(
            QualifiedName(schema, table),
            tenant_column=column,
            tenant_type=_TYPES.get(written, written),
            pk_columns=tuple(c for c in shape.primary_key if c != column),
        )
    except TenantGuardError:
        return f"-- protect {name} by its tenant column {column} (type {written}: no helper cast)"
    body = ";\n".join(render(s) for s in protect_statements(spec))
    return f"-- needs `tenantguard install` (the tenantguard.current_tenant() helper)\n{body};"
