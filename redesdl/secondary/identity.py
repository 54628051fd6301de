"""A secondary's stable identity, kept in its state folder.

The central keys secondaries on this id, so a secondary that restarts,
changes address or reconnects while its old connection still looks alive
replaces its old entry instead of doubling it; the default ``--name``
derives from it, so it too stays the same across restarts. A file whose
fields have the wrong types is set aside (``identity.json.corrupt``) and a
new id is made.
"""

from __future__ import annotations

import re
import socket
import uuid

from twisted.python.filepath import FilePath

from redesdl.jsonfile import (
    Check,
    counter,
    read_json,
    record,
    validator,
    write_json_atomic,
)

_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


def _secondary_id(value: object, where: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"field {where}: expected 8 to 64 letters, digits, - or _")


#: What identity.json holds; files from before the boot counter lack it.
IDENTITY: Check = record({"id": _secondary_id}, {"boots": counter})


def load_identity(state: FilePath) -> tuple[str, int]:
    """The id stored in C{state} (created on first use) and this boot's number.

    The boot counter goes up by one at every start, so the central's log can
    tell a restart from a reconnection.
    """
    path = state.child("identity.json")
    stored = read_json(path, None, check=validator(IDENTITY))
    secondary_id = stored["id"] if stored else uuid.uuid4().hex
    boot = (stored.get("boots", 0) if stored else 0) + 1
    write_json_atomic(path, {"id": secondary_id, "boots": boot})
    return secondary_id, boot


def default_name(secondary_id: str) -> str:
    return f"{socket.gethostname()}-{secondary_id[:8]}"
