"""Signed tenant contexts: the token the pool binds instead of a plain tenant id.

No I/O. With ``install --signed`` the database's policies only believe a tenant
setting that carries a valid HMAC-SHA-256 made with a key from the key table, which
only a NOLOGIN key-owner role can read. SQL that reaches a leased connection can
still write the setting, but without the key it cannot write a value the database
accepts for another tenant, user or lifetime.

The token (one text value, bound into the same ``set_config`` as before)::

    <mac: 64 hex>.tg1.<key id: 8 hex>.<expiry: 10 digits, unix seconds>.<nonce: 16 hex>.<tenant>[\\x1f<user>]

``mac = HMAC-SHA-256(secret, everything after the first '.')``. The fixed-width head
lets the database cut fields with ``substr`` (cheap) and the tenant, which may hold
any printable character, comes last; tenant and user ids never contain control
characters (see :mod:`tenantguard.core.ids`), so ``\\x1f`` separates them
unambiguously. The database verifies with two calls of its built-in ``sha256()``
over precomputed inner and outer key blocks (see :func:`key_blocks`).

A key travels as ``<key id>:<secret hex>`` (what ``tenantguard keys create`` prints,
and what ``TENANTGUARD_SIGNING_KEY`` holds).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import LiteralString

from tenantguard.core._bounded import remember
from tenantguard.core.binding import SettingBinder
from tenantguard.core.context import TenantContext
from tenantguard.errors import InvalidSigningKey

__all__ = [
    "ENV_VAR",
    "SignedBinder",
    "SigningKey",
    "key_blocks",
    "key_from_env",
    "new_key",
    "parse_signing_key",
    "sign_context",
]

#: The environment variable a pool reads its signing key from.
ENV_VAR = "TENANTGUARD_SIGNING_KEY"
VERSION = "tg1"
KEY_ID_LEN = 8
SECRET_BYTES = 32
MAC_HEX_LEN = 64
NONCE_HEX_LEN = 16
SEPARATOR = "\x1f"  # between tenant and user: never inside a valid id

# 1-based positions for the SQL side (see tenantguard.core.signed_sql).
MSG_START = MAC_HEX_LEN + 2  # 66: the signed message starts after "<mac>."
KEY_ID_POS = MSG_START + len(VERSION) + 1  # 70
EXPIRY_POS = KEY_ID_POS + KEY_ID_LEN + 1  # 79
EXPIRY_LEN = 10
TAIL_POS = EXPIRY_POS + EXPIRY_LEN + 1 + NONCE_HEX_LEN + 1  # 107: tenant[\x1f user]

_KEY_ID = re.compile(r"[0-9a-f]{8}")
_KEY_TEXT = re.compile(r"([0-9a-f]{8}):([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key id and its 32-byte secret. ``str()`` never shows the secret."""

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KEY_ID.fullmatch(self.key_id):
            raise InvalidSigningKey("the key id must be 8 lowercase hex digits")
        if len(self.secret) != SECRET_BYTES:
            raise InvalidSigningKey(f"the secret must be {SECRET_BYTES} bytes")

    def export(self) -> str:
        """``<key id>:<secret hex>``: the value of ``TENANTGUARD_SIGNING_KEY``."""
        return f"{self.key_id}:{self.secret.hex()}"

    def __str__(self) -> str:
        return f"SigningKey({self.key_id})"


def new_key() -> SigningKey:
    """A fresh random key (``secrets``)."""
    return SigningKey(secrets.token_hex(KEY_ID_LEN // 2), secrets.token_bytes(SECRET_BYTES))


def parse_signing_key(value: str | SigningKey) -> SigningKey:
    """Parse ``<key id>:<secret hex>`` (an optional ``TENANTGUARD_SIGNING_KEY=`` prefix is
    accepted, so the line ``keys create`` printed can be pasted as is)."""
    if isinstance(value, SigningKey):
        return value
    if not isinstance(value, str):
        raise InvalidSigningKey(f"expected a string, got {type(value).__name__}")
    text = value.strip()
    if text.startswith(ENV_VAR + "="):
        text = text[len(ENV_VAR) + 1 :]
    match = _KEY_TEXT.fullmatch(text)
    if match is None:
        # Never echo the value: it may be a secret with a typo.
        raise InvalidSigningKey(
            f"not a tenantguard signing key ({len(text)} characters; expected "
            f"{KEY_ID_LEN} hex digits, ':', {SECRET_BYTES * 2} hex digits)"
        )
    return SigningKey(match.group(1), bytes.fromhex(match.group(2)))


def key_blocks(key: SigningKey) -> tuple[bytes, bytes]:
    """The HMAC inner and outer blocks (secret zero-padded to 64 bytes, XOR 0x36 / 0x5c).

    The key table stores these rather than the secret, so the database computes
    HMAC-SHA-256 as ``sha256(opad || sha256(ipad || message))``: RFC 2104 exactly.
    """
    padded = key.secret.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)


def sign_context(
    key: SigningKey,
    tenant: str,
    user: str | None,
    *,
    expires_at: int,
    nonce: str | None = None,
) -> str:
    """The token for *tenant* (and *user*), valid until unix time *expires_at*."""
    if not 0 < expires_at < 10**EXPIRY_LEN:
        raise InvalidSigningKey(f"expiry {expires_at} out of range")
    nonce = nonce if nonce is not None else secrets.token_hex(NONCE_HEX_LEN // 2)
    msg = f"{VERSION}.{key.key_id}.{expires_at:010d}.{nonce}.{tenant}"
    if user:
        msg += SEPARATOR + user
    mac = hmac.new(key.secret, msg.encode(), hashlib.sha256).hexdigest()
    return f"{mac}.{msg}"


#: Tokens kept per binder (tenants x users); past it the cache starts over.
TOKEN_CACHE_SIZE = 16384  # (as BIND_CACHE_SIZE in core.session)


class SignedBinder(SettingBinder):
    """Bind a signed token into the tenant setting (and the plain user into the user setting).

    Same statement and parameters as :class:`~tenantguard.core.binding.SettingBinder`
    (including its role and search_path pins): only the tenant value differs, so a
    signed request costs the same round trip. A
    token lives *ttl* seconds and is reused for the same (tenant, user) until
    *refresh* seconds before it expires. The database reads the user from the token;
    the user setting is still written so that code which reads it sees the same value.
    """

    __slots__ = ("_cache", "key", "refresh", "ttl")

    #: Tokens expire: a lease must ask for the binding again, not reuse it forever.
    stable = False

    def __init__(
        self,
        key: SigningKey | str,
        setting: str = "app.tenant_id",
        user_setting: str = "app.user_id",
        *,
        ttl: int = 300,
        refresh: int = 60,
    ) -> None:
        super().__init__(setting, user_setting)
        self.key = parse_signing_key(key)
        if ttl < 10 or not 0 <= refresh < ttl:
            raise InvalidSigningKey(
                f"ttl={ttl}, refresh={refresh}: need ttl >= 10 and 0 <= refresh < ttl"
            )
        self.ttl = ttl
        self.refresh = refresh
        self._cache: dict[tuple[object, type, str | None], tuple[float, str]] = {}

    def token(self, ctx: TenantContext, now: float | None = None) -> str:
        """The (cached) token for *ctx*."""
        now = time.time() if now is None else now
        value = ctx.tenant.value
        key = (value, type(value), ctx.user)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        expires = int(now) + self.ttl
        tok = sign_context(self.key, str(ctx.tenant), ctx.user, expires_at=expires)
        remember(self._cache, key, (float(expires - self.refresh), tok), TOKEN_CACHE_SIZE)
        return tok

    def bind_query(self, ctx: TenantContext) -> tuple[LiteralString, tuple[str, ...]]:
        return self.bind_values(self.token(ctx), ctx.user or "")

    def __repr__(self) -> str:
        return (
            f"SignedBinder(key_id={self.key.key_id!r}, setting={self.setting!r}, "
            f"user_setting={self.user_setting!r}, ttl={self.ttl})"
        )


def key_from_env(environ: dict[str, str] | None = None) -> SigningKey | None:
    """The key in ``TENANTGUARD_SIGNING_KEY``, or None when unset or empty."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return parse_signing_key(value) if value.strip() else None
