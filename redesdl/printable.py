"""Peer strings made safe to print on a terminal or in a log.

A peer chooses file names, client names and error texts. Printed raw, an
``ESC [2J`` clears the operator's screen, a ``\\r`` or ``\\n`` forges a log
line, a C1 ``\\x9b`` starts a terminal command on its own, and a U+202E bidi
override shows a name backwards. L{printable} escapes every character Python
does not call printable (C0, DEL, C1, lone surrogates, format and separator
characters other than the space, unassigned code points) the way ``repr``
does, and cuts long strings with a marker that says how much was left out.
L{escape_event} applies it to a log event's fields, so the daemons' logs do
not depend on every call site remembering.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import LogPublisher, globalLogPublisher

#: Longest output of L{printable} before the marker, in characters.
DEFAULT_LIMIT = 300
#: The same for a log event's field: long enough for a protocol trace line.
LOG_FIELD_LIMIT = 2000
#: How deep L{escape_event} looks into lists, tuples and dicts of a field.
MAX_DEPTH = 3


def printable(value: str, limit: int | None = DEFAULT_LIMIT) -> str:
    """C{value} with every non-printable character escaped, cut at C{limit}.

    Printable text comes back unchanged (the same object). Escapes are
    ``\\xNN`` below U+0100, ``\\uNNNN`` in the BMP (lone surrogates included)
    and ``\\UNNNNNNNN`` beyond. A string longer than C{limit} characters once
    escaped is cut and ends with ``...[N more characters]``; C{None} never cuts.
    """
    if value.isprintable() and (limit is None or len(value) <= limit):
        return value
    pieces: list[str] = []
    length = 0
    for position, character in enumerate(value):
        piece = character if character.isprintable() else _escape(character)
        if limit is not None and length + len(piece) > limit:
            return "".join(pieces) + f"...[{len(value) - position} more characters]"
        pieces.append(piece)
        length += len(piece)
    return "".join(pieces)


def _escape(character: str) -> str:
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_event(event: dict[str, Any], limit: int | None = LOG_FIELD_LIMIT) -> None:
    """Escape, in place, the string fields a log event's format may print.

    Twisted's own ``log_*`` fields are left alone (their text is Twisted's,
    and a traceback's newlines must stay newlines); every other field that is
    a string, an exception, or a list, tuple or dict holding strings is
    replaced by its escaped copy. Values that need nothing keep their identity.
    """
    for key, value in event.items():
        if not key.startswith("log_"):
            escaped = _escaped(value, limit, MAX_DEPTH)
            if escaped is not value:
                event[key] = escaped


def escaped_event(
    event: dict[str, Any], limit: int | None = LOG_FIELD_LIMIT
) -> dict[str, Any]:
    """A copy of C{event} with L{escape_event} applied; C{event} is untouched."""
    copy = dict(event)
    escape_event(copy, limit)
    return copy


def _escaped(value: Any, limit: int | None, depth: int) -> Any:
    if isinstance(value, str):
        return printable(value, limit)
    if isinstance(value, BaseException):
        text = str(value)
        safe = printable(text, limit)
        return value if safe is text else safe
    if depth <= 0:
        return value
    if isinstance(value, (list, tuple)):
        items = [_escaped(item, limit, depth - 1) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return type(value)(items) if type(value) in (list, tuple) else items
    if isinstance(value, dict):
        pairs = {
            _escaped(k, limit, depth - 1): _escaped(v, limit, depth - 1)
            for k, v in value.items()
        }
        unchanged = len(pairs) == len(value) and all(
            k in value and pairs[k] is value[k] for k in pairs
        )
        return value if unchanged else pairs
    return value


def _escape_in_place(event: dict[str, Any]) -> None:
    escape_event(event)


def escape_logs(publisher: LogPublisher = globalLogPublisher) -> None:
    """Escape peer strings in every event before any later observer formats it.

    A publisher hands the same event to its observers in the order they were
    added. Added here, before twistd adds its own log file or ``--logger``
    observer (it does so after parsing options and building the service), the
    escaper rewrites each event's fields in place for every observer after it,
    so no log line depends on a call site remembering L{printable}. Adding it
    twice changes nothing.
    """
    publisher.addObserver(_escape_in_place)
