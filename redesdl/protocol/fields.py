"""Readers for the values inside a message: every string, count and list a peer sends.

Each reader takes the decoded JSON object and a key, and returns the value
only if it has the right type and stays within its bound; otherwise it
raises a ``bad_request`` L{ProtocolError} naming the field. Strings must be
Unicode scalar values: JSON can carry a lone surrogate (``"\\ud800"``), which
no file system, log or terminal can take, so such a string is refused here,
once, at the edge.
"""

from __future__ import annotations

import re
from typing import Any

from redesdl.protocol.errors import ProtocolError

MAX_STRING = 4096
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_scalar_text(value: str) -> bool:
    """True if C{value} holds no lone surrogate, so it encodes as UTF-8."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text(message: dict[str, Any], key: str, *, max_length: int = MAX_STRING) -> str:
    value = message.get(key)
    if not isinstance(value, str) or len(value) > max_length:
        raise ProtocolError(
            "bad_request",
            f"{key!r} must be a string of at most {max_length} characters",
        )
    if not is_scalar_text(value):
        raise ProtocolError(
            "bad_request", f"{key!r} must be valid Unicode (no lone surrogates)"
        )
    return value


def printable_text(
    message: dict[str, Any], key: str, *, max_length: int, refusal: str
) -> str:
    """A string shown to people (a name, a host): C{refusal} if it holds
    control or format characters, which a terminal would obey or reorder."""
    value = text(message, key, max_length=max_length)
    if not value.isprintable():
        raise ProtocolError("bad_request", refusal)
    return value


def optional_text(
    message: dict[str, Any], key: str, *, max_length: int = MAX_STRING
) -> str | None:
    if message.get(key) is None:
        return None
    return text(message, key, max_length=max_length)


def count(message: dict[str, Any], key: str, *, maximum: int = 2**63 - 1) -> int:
    value = message.get(key)
    if type(value) is not int or not 0 <= value <= maximum:
        raise ProtocolError(
            "bad_request", f"{key!r} must be an integer in 0..{maximum}"
        )
    return value


def flag(message: dict[str, Any], key: str) -> bool:
    value = message.get(key)
    if type(value) is not bool:
        raise ProtocolError("bad_request", f"{key!r} must be true or false")
    return value


def seconds(message: dict[str, Any], key: str) -> float:
    value = message.get(key)
    if type(value) not in (int, float) or not 0 <= value < 2**53:
        raise ProtocolError("bad_request", f"{key!r} must be a number of seconds")
    return float(value)


def digest(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ProtocolError("bad_request", f"{key!r} must be a lowercase SHA-256 hex")
    return value


def items(message: dict[str, Any], key: str, *, max_items: int) -> list[Any]:
    value = message.get(key)
    if not isinstance(value, list) or len(value) > max_items:
        raise ProtocolError(
            "bad_request", f"{key!r} must be a list of at most {max_items} items"
        )
    return value


def mapping(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError("bad_request", f"{key!r} must be an object")
    return value


def request_id(message: dict[str, Any]) -> int | None:
    """The C{id} a reply to C{message} should carry, if it has a usable one."""
    value = message.get("id")
    return value if type(value) is int and 0 <= value < 2**63 else None
