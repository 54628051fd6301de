"""Read and atomically write the JSON files every actor keeps, checked on load.

A JSON file is written to a temporary file beside it, fsynced, and renamed
over the old one, so a crash leaves either the old or the new content, never
half of one. A file that cannot be parsed, or whose fields do not have the
types its reader declares (L{record}, L{mapping}, L{sequence}, L{counter}...),
is moved aside to ``NAME.corrupt`` with one log line so the actor starts
fresh instead of failing later on a string where it adds numbers.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import os
from collections.abc import Callable, Generator, Iterator
from typing import Any

from twisted.logger import Logger
from twisted.python.filepath import FilePath

from redesdl.fsutil import fsync_directory, open_regular
from redesdl.printable import printable

log = Logger()

#: A check of one value: raises ValueError naming C{where} if it is wrong.
Check = Callable[[Any, str], None]


#: How every JSON file here is written: one space of indent, keys sorted.
_ENCODER = json.JSONEncoder(indent=1, sort_keys=True)

#: Entries of a document L{encode_json_in_slices} encodes per slice, at most.
SLICE_ENTRIES = 1000

_CONTAINERS = (dict, list, tuple)
_GONE = object()


def encode_json(value: Any) -> bytes:
    """C{value} as JSON, formatted as every file here is."""
    return _ENCODER.encode(value).encode()


def write_bytes_atomic(path: FilePath, data: bytes) -> None:
    """Replace the file at C{path} with C{data}, atomically and durably."""
    temporary = path.sibling(path.basename() + ".tmp")
    try:
        with open(temporary.path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary.path, path.path)
    except BaseException:
        # A full disk: the old file stays as it was, and no torn copy beside it.
        with contextlib.suppress(OSError):
            os.unlink(temporary.path)
        raise
    fsync_directory(path.parent().path)


def write_json_atomic(path: FilePath, value: Any) -> None:
    """Replace the file at C{path} with C{value} as JSON, atomically."""
    write_bytes_atomic(path, encode_json(value))


def encode_json_in_slices(
    value: Any, out: list[str], limit: int = SLICE_ENTRIES
) -> Iterator[int]:
    """Append C{value} as JSON to C{out} a slice at a time, for a Cooperator.

    Each step encodes at most C{limit} entries (an item of an object or a
    list, at any depth) and yields how many, so a document of any size never
    holds the reactor long. C{value} may change between steps: an object's
    keys are copied when its encoding starts and a key deleted meanwhile is
    skipped; a list is copied; a small object or list of plain values (one
    file's counts) is encoded in one step, as it is at that moment. Unchanged,
    the text is what L{encode_json} gives. Keys must be strings.
    """
    return _Slicer(out, limit).run(value)


class _Slicer:
    """The state of one L{encode_json_in_slices}: output and work so far."""

    def __init__(self, out: list[str], limit: int) -> None:
        self.out = out
        self.limit = limit
        self.used = 0

    def run(self, value: Any) -> Iterator[int]:
        self.used = self._cost(value)
        yield from self._value(value, 0)
        yield self.used

    def _cost(self, value: Any) -> int:
        """The entries of C{value} encoded in one go: 1 unless a small record."""
        return 1 + len(value) if self._whole(value) else 1

    def _whole(self, value: Any) -> bool:
        """Whether C{value} is a small object or list of plain values."""
        if not isinstance(value, _CONTAINERS) or len(value) >= self.limit:
            return False
        items = value.values() if isinstance(value, dict) else value
        return not any(isinstance(item, _CONTAINERS) for item in items)

    def _spend(self, entries: int) -> Iterator[int]:
        """Count C{entries} of work, in the next slice if this one is full."""
        if self.used and self.used + entries > self.limit:
            yield self.used
            self.used = 0
        self.used += entries

    def _fetched(self, lookup: Callable[[], Any]) -> Generator[int, None, Any]:
        """C{lookup()}, once this slice has room to encode it (maybe the next)."""
        value = lookup()
        if self.used and self.used + self._cost(value) > self.limit:
            yield self.used
            self.used = 0
            value = lookup()  # it may have changed meanwhile
        if value is not _GONE:
            self.used += self._cost(value)
        return value

    def _value(self, value: Any, depth: int) -> Iterator[int]:
        if isinstance(value, dict) and not self._whole(value):
            yield from self._object(value, depth)
        elif isinstance(value, (list, tuple)) and not self._whole(value):
            yield from self._list(list(value), depth)
        else:
            text = _ENCODER.encode(value)
            self.out.append(text.replace("\n", "\n" + " " * depth) if depth else text)

    def _object(self, value: dict[str, Any], depth: int) -> Iterator[int]:
        keys = list(value)
        runs = []
        for start in range(0, len(keys), self.limit):
            run = keys[start : start + self.limit]
            yield from self._spend(len(run))
            runs.append(sorted(run))
        indent = "\n" + " " * (depth + 1)
        opened = False
        for key in heapq.merge(*runs):
            item = yield from self._fetched(lambda key=key: value.get(key, _GONE))
            if item is _GONE:
                continue  # deleted since its encoding began
            self.out.append(
                ("," if opened else "{") + indent + _ENCODER.encode(key) + ": "
            )
            opened = True
            yield from self._value(item, depth + 1)
        self.out.append("\n" + " " * depth + "}" if opened else "{}")

    def _list(self, items: list[Any], depth: int) -> Iterator[int]:
        indent = "\n" + " " * (depth + 1)
        for i in range(len(items)):
            item = yield from self._fetched(lambda i=i: items[i])
            self.out.append(("," if i else "[") + indent)
            yield from self._value(item, depth + 1)
        self.out.append("\n" + " " * depth + "]" if items else "[]")


#: Largest value a counter or a number of a state file may hold.
MAX_COUNT = 2**63 - 1
#: Largest state file read: far above any real one, below what would
#: exhaust memory (a symlink to a huge file, say).
MAX_STATE_BYTES = 1024**3
#: Deepest nesting of a state file, unknown fields included: the writer
#: recurses that deep at every save.
MAX_DEPTH = 32


def _read_state(path: str) -> bytes:
    """The bytes of the regular file at C{path}, at most L{MAX_STATE_BYTES}."""
    with open_regular(path) as f:
        if os.fstat(f.fileno()).st_size > MAX_STATE_BYTES:
            raise ValueError(f"over {MAX_STATE_BYTES} bytes")
        return f.read(MAX_STATE_BYTES + 1)


def _check_depth(value: Any) -> None:
    """Refuse a document nested deeper than L{MAX_DEPTH}."""
    level = [value]
    for _ in range(MAX_DEPTH):
        inner: list[Any] = []
        for container in level:
            if isinstance(container, dict):
                inner.extend(container.values())
            elif isinstance(container, list):
                inner.extend(container)
        if not inner:
            return
        level = inner
    if any(isinstance(item, dict | list) for item in level):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")


def read_json(
    path: FilePath, default: Any, check: Callable[[Any], None] | None = None
) -> Any:
    """Load JSON from C{path}; C{default} if missing, set aside if unusable.

    C{check} (for instance L{validator}) raises ValueError when the parsed
    value is not what the reader expects; the file is then set aside too.
    """
    try:
        value = json.loads(_read_state(path.path))
        _check_depth(value)
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
    try:
        os.replace(path.path, aside.path)
    except OSError as e:
        log.warn(
            "{path} is unusable ({error}) and cannot be moved to {aside} "
            "({why}); starting fresh, it will be replaced at the next save",
            path=path.path,
            error=why,
            aside=aside.path,
            why=e.strerror or e,
        )
        return
    log.warn(
        "{path} is unusable ({error}); moved to {aside}, starting fresh",
        path=path.path,
        error=why,
        aside=aside.path,
    )


def validator(schema: Check) -> Callable[[Any], None]:
    """A C{check} for L{read_json} from a schema such as L{record}."""
    return lambda value: schema(value, "")


def _wrong(where: str, expected: str, value: Any) -> ValueError:
    field = f"field {where}" if where else "the document"
    return ValueError(f"{field}: expected {expected}, got {type(value).__name__}")


def counter(value: Any, where: str) -> None:
    """A whole number, 0 or more (not a bool, not a float), that fits in 64
    bits: a count of 4300 digits loads, but adding one to it cannot be saved."""
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise _wrong(where, "a whole number 0 or more", value)


def number(value: Any, where: str) -> None:
    """A finite number, 0 or more (seconds, timestamps), within 64 bits."""
    if (
        type(value) not in (int, float)
        or not 0 <= value <= MAX_COUNT
        or not math.isfinite(value)
    ):
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
