"""SQL builders for signed tenant contexts (``install --signed``, ``keys``, signed policies).

Pure functions, like :mod:`tenantguard.core.sqlbuild`. The database side:

* a key schema (``<schema>_keys``) and everything in it owned by a NOLOGIN key-owner
  role; the app role gets ``USAGE`` on the schema and ``SELECT`` on the view only;
* ``signing_keys``: the HMAC inner/outer blocks per key id (``REVOKE ALL FROM PUBLIC``;
  the installing admin may write it, for ``tenantguard keys``);
* ``signed_context``: a ``security_barrier`` view owned by the key owner, so it reads the
  key table with the owner's rights while the caller cannot. It yields the tenant and
  user of a token whose MAC verifies with a live key and whose expiry is in the future,
  and NULL otherwise. Policies read it in a scalar sub-select: one InitPlan, so the
  MAC is checked once per statement, not per row, and the plan stays cacheable
  (measured cheapest, see docs/credentials.md);
* ``_fail_signed(what)``: PL/pgSQL, ``SECURITY DEFINER`` with a pinned ``search_path``,
  reached only when there is no valid context: it raises ``insufficient_privilege`` and
  says why (unset, malformed, unknown or retired key, bad MAC, expired). Never the
  hot path;
* ``current_tenant()`` / ``current_user_id()`` replaced by readers of the view, so a
  policy written against the plain helpers verifies too (slower: not inlinable).
"""

from __future__ import annotations

from typing import Literal

from psycopg import sql

from tenantguard.core.names import check_identifier, check_setting_name
from tenantguard.core.signing import (
    EXPIRY_LEN,
    EXPIRY_POS,
    KEY_ID_LEN,
    KEY_ID_POS,
    MAC_HEX_LEN,
    MSG_START,
    SEPARATOR,
    TAIL_POS,
)
from tenantguard.core.sqlbuild import CONTEXT_VIEW, FAIL_FUNCTION, signed_predicate, signed_reader

__all__ = [
    "CONTEXT_VIEW",
    "FAIL_FUNCTION",
    "KEY_TABLE",
    "insert_key_statement",
    "keys_schema_for",
    "signed_install_statements",
    "signed_predicate",
]

KEY_TABLE = "signing_keys"


def keys_schema_for(schema: str) -> str:
    """The key schema that goes with helper schema *schema*."""
    return check_identifier(f"{schema}_keys", "schema name")


def _lit(value: object) -> sql.Literal:
    return sql.Literal(value)


def _view_sql(keys_schema: str, setting: str) -> sql.Composed:
    """The verifying view. Every function and operator is schema-qualified (the view is
    bound to them at creation, whatever ``search_path`` a caller sets later).

    The setting is read where it is used rather than once in a sub-select: a sub-select
    costs two more plan nodes to start per statement, a ``current_setting`` call less
    than a microsecond (measured: tools/signed_cost.py, docs/credentials.md).
    """
    tok = sql.SQL("pg_catalog.current_setting({}, true)").format(
        sql.Literal(check_setting_name(setting))
    )
    # HMAC-SHA-256(secret, message) = sha256(opad || sha256(ipad || message)).
    mac_ok = sql.SQL(
        "pg_catalog.encode(pg_catalog.sha256(k.opad OPERATOR(pg_catalog.||) "
        "pg_catalog.sha256(k.ipad OPERATOR(pg_catalog.||) "
        "pg_catalog.convert_to(pg_catalog.substr({tok}, {msg}), 'UTF8'))), 'hex') "
        "OPERATOR(pg_catalog.=) pg_catalog.substr({tok}, 1, {maclen})"
    ).format(tok=tok, msg=_lit(MSG_START), maclen=_lit(MAC_HEX_LEN))
    # Only cast the expiry once the MAC has verified (so it is our 10 digits): CASE
    # evaluates in order, a WHERE clause may not.
    live = sql.SQL(
        "pg_catalog.substr({tok}, {epos}, {elen})::pg_catalog.int8 OPERATOR(pg_catalog.>) "
        "pg_catalog.date_part('epoch', pg_catalog.now())"
    ).format(tok=tok, epos=_lit(EXPIRY_POS), elen=_lit(EXPIRY_LEN))

    def field(n: int) -> sql.Composed:
        return sql.SQL(
            "CASE WHEN {mac_ok} THEN CASE WHEN {live} THEN pg_catalog.split_part("
            "pg_catalog.substr({tok}, {tail}), {sep}, {n}) END END"
        ).format(
            mac_ok=mac_ok, live=live, tok=tok, tail=_lit(TAIL_POS), sep=_lit(SEPARATOR), n=_lit(n)
        )

    body = sql.SQL(
        "SELECT {tenant} AS tenant, {user} AS user_id FROM {keys} k "
        "WHERE k.key_id OPERATOR(pg_catalog.=) pg_catalog.substr({tok}, {kpos}, {klen}) "
        "AND k.retired_at IS NULL"
    ).format(
        tenant=field(1),
        user=field(2),
        tok=tok,
        keys=sql.Identifier(keys_schema, KEY_TABLE),
        kpos=_lit(KEY_ID_POS),
        klen=_lit(KEY_ID_LEN),
    )
    return sql.SQL("CREATE OR REPLACE VIEW {view} WITH (security_barrier) AS {body}").format(
        view=sql.Identifier(keys_schema, CONTEXT_VIEW), body=body
    )


_FAIL_SIGNED_BODY = """
DECLARE
    tok text := pg_catalog.current_setting({setting}, true);
    k record;
    why text;
BEGIN
    IF tok IS NULL OR tok = '' THEN
        why := 'no tenant is bound (setting %s is unset or empty)';
    ELSIF pg_catalog.length(tok) < {tail} OR tok !~ {shape} THEN
        why := 'setting %s does not hold a signed tenant context (a plain id, or edited)';
    ELSE
        SELECT ipad, opad, retired_at INTO k FROM {keys} WHERE key_id = pg_catalog.substr(tok, {kpos}, {klen});
        IF NOT FOUND THEN
            why := 'setting %s is signed with an unknown key id';
        ELSIF k.retired_at IS NOT NULL THEN
            why := 'setting %s is signed with a retired key';
        ELSIF pg_catalog.encode(pg_catalog.sha256(k.opad || pg_catalog.sha256(k.ipad
                || pg_catalog.convert_to(pg_catalog.substr(tok, {msg}), 'UTF8'))), 'hex')
              <> pg_catalog.substr(tok, 1, {maclen}) THEN
            why := 'the signature in setting %s does not verify';
        ELSIF pg_catalog.substr(tok, {epos}, {elen})::int8 <= pg_catalog.date_part('epoch', pg_catalog.now()) THEN
            why := 'the signed context in setting %s has expired';
        ELSIF what = 'user' THEN
            why := 'no user is bound (the signed context in setting %s has none)';
        ELSE
            why := 'setting %s holds no valid signed tenant context';
        END IF;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'insufficient_privilege',
        MESSAGE = 'tenantguard: ' || pg_catalog.format(why, {setting}),
        HINT = 'bind a context signed with a live key: TenantPool(..., signing_key=...) '
            'or TENANTGUARD_SIGNING_KEY; see `tenantguard keys`';
END
"""


def _fail_sql(keys_schema: str, setting: str) -> sql.Composed:
    shape = (
        f"^[0-9a-f]{{{MAC_HEX_LEN}}}\\.tg1\\.[0-9a-f]{{{KEY_ID_LEN}}}\\."
        f"[0-9]{{{EXPIRY_LEN}}}\\.[0-9a-f]{{16}}\\."
    )
    body = sql.SQL(_FAIL_SIGNED_BODY).format(
        setting=_lit(check_setting_name(setting)),
        tail=_lit(TAIL_POS),
        shape=_lit(shape),
        keys=sql.Identifier(keys_schema, KEY_TABLE),
        kpos=_lit(KEY_ID_POS),
        klen=_lit(KEY_ID_LEN),
        msg=_lit(MSG_START),
        maclen=_lit(MAC_HEX_LEN),
        epos=_lit(EXPIRY_POS),
        elen=_lit(EXPIRY_LEN),
    )
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}(what text) RETURNS text LANGUAGE plpgsql STABLE "
        "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {body}"
    ).format(fn=sql.Identifier(keys_schema, FAIL_FUNCTION), body=sql.Literal(body.as_string()))


def signed_install_statements(
    *,
    schema: str,
    setting: str,
    app_role: str,
    key_owner_role: str,
    create_key_owner: bool,
) -> list[sql.Composed]:
    """What ``install --signed`` adds after the plain install. Idempotent."""
    ks = keys_schema_for(schema)
    kschema = sql.Identifier(ks)
    kowner = sql.Identifier(key_owner_role)
    app = sql.Identifier(app_role)
    table = sql.Identifier(ks, KEY_TABLE)
    view = sql.Identifier(ks, CONTEXT_VIEW)
    fail = sql.SQL("{}(text)").format(sql.Identifier(ks, FAIL_FUNCTION))
    out: list[sql.Composed] = []
    if create_key_owner:
        out.append(
            sql.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT").format(kowner)
        )
    out += [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(kschema, kowner),
        sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(kschema, kowner),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(kschema),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(kschema, app),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "key_id text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{{8}}$'), "
            "ipad bytea NOT NULL CHECK (length(ipad) = 64), "
            "opad bytea NOT NULL CHECK (length(opad) = 64), "
            "created_at timestamptz NOT NULL DEFAULT now(), "
            "retired_at timestamptz)"
        ).format(table),
        sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, kowner),
        sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC").format(table),
        sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(table, app),
        # The installing admin runs `tenantguard keys`; the app role never may.
        sql.SQL("GRANT SELECT, INSERT, UPDATE ON TABLE {} TO CURRENT_USER").format(table),
        _view_sql(ks, setting),
        sql.SQL("ALTER VIEW {} OWNER TO {}").format(view, kowner),
        sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC").format(view),
        sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(view, app),
        _fail_sql(ks, setting),
        sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(fail, kowner),
        sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(fail),
        sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(fail, app),
    ]
    # The plain helpers become verifying readers, so a policy that calls them is safe too.
    readers: tuple[tuple[str, Literal["tenant", "user"]], ...] = (
        ("current_tenant", "tenant"),
        ("current_user_id", "user"),
    )
    for fname, what in readers:
        out.append(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {fn}() RETURNS text LANGUAGE sql STABLE "
                "PARALLEL SAFE AS {body}"
            ).format(
                fn=sql.Identifier(schema, fname),
                body=sql.Literal(sql.SQL("SELECT {}").format(signed_reader(ks, what)).as_string()),
            )
        )
    return out


def insert_key_statement(keys_schema: str) -> sql.Composed:
    """INSERT of a key's blocks; parameters: key id, ipad, opad."""
    return sql.SQL("INSERT INTO {} (key_id, ipad, opad) VALUES (%s, %s, %s)").format(
        sql.Identifier(keys_schema, KEY_TABLE)
    )
