"""Tenant ids: validated on the client, before any I/O.

A tenant id is one of four kinds, matching the column that holds it: ``int``
(PostgreSQL ``integer``), ``bigint``, ``uuid`` or ``text``. Ids from the outside
world (a header, a subdomain, a JWT claim) arrive as strings; :func:`parse_tenant_id`
turns them into a :class:`TenantId` or raises :class:`~tenantguard.errors.InvalidTenantId`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal, get_args

from tenantguard.errors import InvalidTenantId

__all__ = ["TenantId", "TenantKind", "kind_for_type", "parse_tenant_id", "parse_user_id"]

TenantKind = Literal["int", "bigint", "uuid", "text"]
TENANT_KINDS: tuple[str, ...] = get_args(TenantKind)

_INT_RANGES = {"int": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
_BIGINT_MIN, _BIGINT_MAX = _INT_RANGES["bigint"]
# Canonical decimal only: the server's integer input also takes "+2", "002", " 2" and,
# from PostgreSQL 16, "0x2", "0o2", "0b10" and "2_0"; each would be another spelling of
# one tenant, so an id that passed a string comparison could reach another tenant.
_INT_TEXT = re.compile(r"0|-?[1-9][0-9]{0,18}")
# Canonical UUID text: lower case, hyphenated (the server also takes braces, upper case,
# no hyphens).
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Text ids: printable, no surrounding blanks, no NUL or control characters.
_TEXT_ID = re.compile(r"[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?")
MAX_TEXT_LEN = 255


@dataclass(frozen=True, slots=True)
class TenantId:
    """A validated tenant id. ``str(tid)`` is the text sent to the database."""

    value: int | uuid.UUID | str
    kind: TenantKind

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return f"TenantId({self.value!r})"


def _parse_int(value: object, kind: Literal["int", "bigint"]) -> TenantId:
    if isinstance(value, bool):
        raise InvalidTenantId(value, "a bool is not a tenant id", expected=kind)
    if isinstance(value, str):
        if not _INT_TEXT.fullmatch(value):
            raise InvalidTenantId(
                value,
                "not a canonical decimal integer (no sign, leading zeros, blanks, "
                "underscores or base prefixes)",
                expected=kind,
            )
        number = int(value)
    elif isinstance(value, int):
        # An int subclass may override __str__ or __int__: take the number itself.
        number = int.__int__(value)
    else:
        raise InvalidTenantId(
            value, f"expected an integer, got {type(value).__name__}", expected=kind
        )
    low, high = _INT_RANGES[kind]
    if not low <= number <= high:
        raise InvalidTenantId(value, f"out of range for {kind}", expected=kind)
    return TenantId(number, kind)


def _parse_uuid(value: object) -> TenantId:
    if isinstance(value, uuid.UUID):
        if type(value) is not uuid.UUID:  # a subclass may override __str__
            value = uuid.UUID(uuid.UUID.__str__(value))
        return TenantId(value, "uuid")
    if isinstance(value, str):
        if not _UUID_TEXT.fullmatch(value):
            raise InvalidTenantId(
                value,
                "not a canonical UUID (lower case, hyphenated: "
                "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                expected="uuid",
            )
        return TenantId(uuid.UUID(value), "uuid")
    raise InvalidTenantId(value, f"expected a UUID, got {type(value).__name__}", expected="uuid")


def _parse_text(value: object, expected: TenantKind | None = "text") -> TenantId:
    """A text id; *expected* None: no kind was asked for (errors then name every kind)."""
    if isinstance(value, bool):
        raise InvalidTenantId(value, "a bool is not a tenant id", expected=expected)
    if isinstance(value, int):
        value = str(int.__int__(value))
    elif isinstance(value, uuid.UUID):
        value = uuid.UUID.__str__(value)
    if not isinstance(value, str):
        wanted = "text" if expected else "an int, a UUID or text"
        raise InvalidTenantId(
            value, f"expected {wanted}, got {type(value).__name__}", expected=expected
        )
    if type(value) is not str:  # a subclass may override __str__
        value = str.__str__(value)
    if not value:
        raise InvalidTenantId(value, "empty", expected=expected)
    if len(value) > MAX_TEXT_LEN:
        raise InvalidTenantId(value, f"longer than {MAX_TEXT_LEN} characters", expected=expected)
    if not _TEXT_ID.fullmatch(value):
        raise InvalidTenantId(
            value, "control characters or surrounding blanks are not allowed", expected=expected
        )
    return TenantId(value, "text")


def parse_tenant_id(value: object, kind: TenantKind | None = None) -> TenantId:
    """Validate *value* as a tenant id of *kind*.

    With no *kind*, Python ``int`` becomes ``bigint``, :class:`uuid.UUID` becomes
    ``uuid`` and ``str`` stays ``text``; a pool configured with a kind re-checks
    the id against it (so ``"42"`` is accepted for a ``bigint`` pool, ``"abc"`` is not).
    """
    if type(value) is int and (kind is None or kind == "bigint"):  # the common case
        if _BIGINT_MIN <= value <= _BIGINT_MAX:
            return TenantId(value, "bigint")
        raise InvalidTenantId(value, "out of range for bigint", expected="bigint")
    if isinstance(value, TenantId):
        # Built directly (TenantId("002", "bigint")), it was never checked: check it now
        # against its own kind, then against the asked one. One made here comes back as is.
        own = _parse_kind(value.value, value.kind)
        if own != value or type(own.value) is not type(value.value):
            raise InvalidTenantId(
                value.value,
                f"a TenantId must hold the canonical {value.kind} value "
                f"({own.value!r}); build it with parse_tenant_id()",
                expected=value.kind,
            )
        if kind is None or value.kind == kind:
            return value
        value = value.value
    if kind is None:
        if isinstance(value, int) and not isinstance(value, bool):
            return _parse_int(value, "bigint")
        if isinstance(value, uuid.UUID):
            return _parse_uuid(value)
        return _parse_text(value, None)
    return _parse_kind(value, kind)


def _parse_kind(value: object, kind: TenantKind) -> TenantId:
    if kind == "int" or kind == "bigint":
        return _parse_int(value, kind)
    if kind == "uuid":
        return _parse_uuid(value)
    if kind == "text":
        return _parse_text(value)
    raise InvalidTenantId(value, f"unknown tenant id kind {kind!r}; use one of {TENANT_KINDS}")


_KIND_OF_TYPE: dict[str, TenantKind] = {
    "integer": "int",
    "smallint": "int",
    "bigint": "bigint",
    "uuid": "uuid",
    "text": "text",
    "character varying": "text",
}


def kind_for_type(type_name: str) -> TenantKind | None:
    """The tenant kind for a column of ``format_type()`` *type_name*, or None if unknown."""
    return _KIND_OF_TYPE.get(type_name)


def parse_user_id(value: object) -> str:
    """Validate a user id (for user-level policies); returned as the text sent to the server."""
    try:
        return str(_parse_text(value))
    except InvalidTenantId as exc:
        raise InvalidTenantId(value, "invalid user id: " + exc.message.split(": ", 1)[-1]) from None
