"""Read and atomically write the JSON files every actor keeps, checked on load.

A JSON file is written to a temporary file beside it, fsynced, and renamed
over the old one, so a crash leaves either the old or the new content, never
half of one. A file that cannot be parsed, or whose fields do not have the
types its reader declares (L{record}, L{mapping}, L{sequence}, L{counter}...),
is moved aside to ``NAME.corrupt`` with one log line so the actor starts
fresh instead of failing later on a string where it adds numbers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.filepath import FilePath

from redesdl.fsutil import fsync_directory
from redesdl.printable import printable

log = Logger()

#: A check of one value: raises ValueError naming C{where} if it is wrong.
Check = Callable[[Any, str], None]


def write_json_atomic(path: FilePath, value: Any) -> None:
    """Replace the file at C{path} with C{value} as JSON, atomically."""
    temporary = path.sibling(path.basename() + ".tmp")
    data = json.dumps(value, indent=1, sort_keys=True).encode()
    with open(temporary.path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary.path, path.path)
    fsync_directory(path.parent().path)


def read_json(
    path: FilePath, default: Any, check: Callable[[Any], None] | None = None
) -> Any:
    """Load JSON from C{path}; C{default} if missing, set aside if unusable.

    C{check} (for instance L{validator}) raises ValueError when the parsed
    value is not what the reader expects; the file is then set aside too.
    """
    try:
        with open(path.path, "rb") as f:
            value = json.load(f)
        if check is not None:
            check(value)
        return value
    except FileNotFoundError:
        return default
    except (OSError, ValueError, RecursionError) as e:
        set_aside(path, str(e) or type(e).__name__)
        return default


def set_aside(path: FilePath, why: str) -> None:
    """Move C{path} to C{path}.corrupt, saying why in one line."""
    aside = path.sibling(path.basename() + ".corrupt")
    log.warn(
        "{path} is unusable ({error}); moved to {aside}, starting fresh",
        path=path.path,
        error=why,
        aside=aside.path,
    )
    try:
        os.replace(path.path, aside.path)
    except OSError:
        pass


def validator(schema: Check) -> Callable[[Any], None]:
    """A C{check} for L{read_json} from a schema such as L{record}."""
    return lambda value: schema(value, "")


def _wrong(where: str, expected: str, value: Any) -> ValueError:
    field = f"field {where}" if where else "the document"
    return ValueError(f"{field}: expected {expected}, got {type(value).__name__}")


def counter(value: Any, where: str) -> None:
    """A whole number, 0 or more (not a bool, not a float)."""
    if type(value) is not int or value < 0:
        raise _wrong(where, "a whole number 0 or more", value)


def number(value: Any, where: str) -> None:
    """A finite number, 0 or more (seconds, timestamps)."""
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise _wrong(where, "a number 0 or more", value)


def text(value: Any, where: str) -> None:
    """A string."""
    if not isinstance(value, str):
        raise _wrong(where, "a string", value)


def flag(value: Any, where: str) -> None:
    """True or false."""
    if not isinstance(value, bool):
        raise _wrong(where, "true or false", value)


def anything(value: Any, where: str) -> None:
    """Any JSON value: a field kept but never computed on."""


def optional(check: Check) -> Check:
    """C{check}, or null."""

    def check_optional(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return check_optional


def one_of(*allowed: Any) -> Check:
    """Exactly one of C{allowed} (compared by type and value)."""

    def check_one_of(value: Any, where: str) -> None:
        if not any(type(value) is type(a) and value == a for a in allowed):
            raise ValueError(f"field {where}: expected one of {list(allowed)!r}")

    return check_one_of


def sequence(items: Check, length: int | None = None) -> Check:
    """A list whose items all pass C{items} (of exactly C{length} if given)."""

    def check_sequence(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        if length is not None and len(value) != length:
            raise ValueError(f"field {where}: expected {length} items")
        for i, item in enumerate(value):
            items(item, f"{where}[{i}]")

    return check_sequence


def mapping(values: Check) -> Check:
    """An object of any keys whose values all pass C{values}."""

    def check_mapping(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        for key, item in value.items():
            values(item, field_path(where, key))

    return check_mapping


def record(
    required: dict[str, Check], optional_fields: dict[str, Check] | None = None
) -> Check:
    """An object holding every C{required} field and maybe C{optional_fields}.

    Other fields are allowed and left alone.
    """
    maybe = optional_fields or {}

    def check_record(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        for key, check in required.items():
            if key not in value:
                raise ValueError(f"field {field_path(where, key)}: missing")
            check(value[key], field_path(where, key))
        for key, check in maybe.items():
            if key in value:
                check(value[key], field_path(where, key))

    return check_record


def field_path(where: str, key: str) -> str:
    """How an error names C{key} inside C{where}: dotted, quoted when not a word."""
    name = key if key.isidentifier() else json.dumps(key)
    return printable(f"{where}.{name}" if where else name, 120)
