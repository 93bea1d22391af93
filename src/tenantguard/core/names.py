"""Names that end up in SQL: validated here, quoted by :mod:`psycopg.sql` when composed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import sql

from tenantguard.errors import InvalidIdentifier

__all__ = ["QualifiedName", "check_identifier", "check_setting_name"]

MAX_IDENT_BYTES = 63
# Custom settings need a dotted name (PostgreSQL requires a prefix); keep them plain.
_SETTING = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def check_identifier(value: str, kind: str = "identifier") -> str:
    """Reject names PostgreSQL would truncate or cannot store; quoting is left to ``sql.Identifier``."""
    if not isinstance(value, str) or not value:
        raise InvalidIdentifier(value, kind, "must be a non-empty string")
    if "\x00" in value:
        raise InvalidIdentifier(value, kind, "must not contain NUL")
    if len(value.encode()) > MAX_IDENT_BYTES:
        raise InvalidIdentifier(value, kind, f"longer than {MAX_IDENT_BYTES} bytes")
    return value


def check_setting_name(value: str) -> str:
    """A custom setting name such as ``app.tenant_id``."""
    if not isinstance(value, str) or not _SETTING.fullmatch(value) or len(value) > 120:
        raise InvalidIdentifier(
            value, "setting name", "use a dotted name of letters, digits and _ (e.g. app.tenant_id)"
        )
    return value


@dataclass(frozen=True, slots=True, order=True)
class QualifiedName:
    """``schema.name``; ``parse("invoices")`` means ``public.invoices``."""

    schema: str
    name: str

    def __post_init__(self) -> None:
        check_identifier(self.schema, "schema name")
        check_identifier(self.name, "table name")

    @classmethod
    def parse(cls, text: str, default_schema: str = "public") -> QualifiedName:
        parts = _split_dotted(text)
        if len(parts) == 1:
            return cls(default_schema, parts[0])
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        raise InvalidIdentifier(text, "table name", "use SCHEMA.TABLE")

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return f"{_quote_if_needed(self.schema)}.{_quote_if_needed(self.name)}"


def _split_dotted(text: str) -> list[str]:
    """Split ``a.b`` / ``"A.x".b`` respecting double quotes."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and i + 1 < len(text) and text[i + 1] == '"':
                buf.append('"')
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    if quoted:
        raise InvalidIdentifier(text, "name", "unbalanced double quote")
    parts.append("".join(buf))
    return parts


_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")


def _quote_if_needed(name: str) -> str:
    return name if _PLAIN.fullmatch(name) else '"' + name.replace('"', '""') + '"'
