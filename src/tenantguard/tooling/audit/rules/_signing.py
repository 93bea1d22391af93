"""What the signing rules share: is ``install --signed`` in place, and where."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from tenantguard.core.signed_sql import KEY_TABLE, keys_schema_for
from tenantguard.core.sqlbuild import CONTEXT_VIEW
from tenantguard.tooling.catalog import AuditContext

__all__ = ["Signing", "signing_of"]

HELPER_SCHEMA = "tenantguard"


@dataclass(frozen=True)
class Signing:
    keys_schema: str
    view: str  # qualified, quoted
    table: str  # qualified, quoted


def signing_of(ctx: AuditContext) -> Signing | None:
    """The signed-context objects when the verifying view exists, else None."""
    cached = ctx.extra.get("signing", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    ks = keys_schema_for(HELPER_SCHEMA)
    view = sql.Identifier(ks, CONTEXT_VIEW).as_string(ctx.conn)
    table = sql.Identifier(ks, KEY_TABLE).as_string(ctx.conn)
    row = ctx.conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (view,)).fetchone()
    found = Signing(ks, view, table) if row and row[0] else None
    ctx.extra["signing"] = found
    return found
