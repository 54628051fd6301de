"""A secondary's stable identity, kept in its state folder.

The central keys secondaries on this id, so a secondary that restarts,
changes address or reconnects while its old connection still looks alive
replaces its old entry instead of doubling it; the default ``--name``
derives from it, so it too stays the same across restarts.
"""

from __future__ import annotations

import socket
import uuid

from twisted.python.filepath import FilePath

from redesdl.jsonfile import read_json, write_json_atomic


def load_identity(state: FilePath) -> tuple[str, int]:
    """The id stored in C{state} (created on first use) and this boot's number.

    The boot counter goes up by one at every start, so the central's log can
    tell a restart from a reconnection.
    """
    path = state.child("identity.json")
    stored = read_json(path, {})
    if not isinstance(stored, dict):
        stored = {}
    secondary_id = stored.get("id")
    if not isinstance(secondary_id, str) or not 8 <= len(secondary_id) <= 64:
        secondary_id = uuid.uuid4().hex
    boots = stored.get("boots")
    boot = (boots if type(boots) is int and boots >= 0 else 0) + 1
    write_json_atomic(path, {"id": secondary_id, "boots": boot})
    return secondary_id, boot


def default_name(secondary_id: str) -> str:
    return f"{socket.gethostname()}-{secondary_id[:8]}"
