"""What a file name may be, on the wire and on disk.

A name is a relative path with ``/`` between components, as a secondary found
it under its data folder. Names arrive from the network, so nothing joins one
onto a path before L{validate_name} accepted it: no absolute paths, no ``..``,
no hidden components (they hold our staging area), no control characters
(C0, DEL or C1, so a name printed on a terminal cannot carry an escape).
"""

from __future__ import annotations

import re

from redesdl.protocol.errors import ProtocolError

MAX_NAME_LENGTH = 1024

_FORBIDDEN_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f\\\ud800-\udfff]")
#: An empty, ".", ".." or hidden component: each starts at "/" or the start.
_DUBIOUS_COMPONENT = re.compile(r"(?:^|/)(?:\.|/|$)")


def name_problem(name: str) -> str | None:
    """Say why C{name} is not a valid file name, or return None if it is."""
    if not name or len(name) > MAX_NAME_LENGTH:
        return f"a name must have 1 to {MAX_NAME_LENGTH} characters"
    bad = _FORBIDDEN_CHARACTER.search(name)
    if bad is not None:
        if "\ud800" <= bad.group() <= "\udfff":
            return "a name must be valid UTF-8"
        return "a name may not contain control characters or backslashes"
    if _DUBIOUS_COMPONENT.search(name) is None:
        return None
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return "a name is a relative path without empty, '.' or '..' parts"
        if part.startswith("."):
            return "a name may not have hidden ('.') components"
    return None


def validate_name(name: str) -> str:
    """Return C{name} if valid, else raise a ``bad_request`` L{ProtocolError}."""
    problem = name_problem(name)
    if problem is not None:
        raise ProtocolError("bad_request", f"invalid name {name!r}: {problem}")
    return name
