"""A secondary's stable identity, kept in its state folder.

The central keys secondaries on this id, so a secondary that restarts or
changes address replaces its old entry; the default ``--name`` derives from
it, so it too stays the same across restarts.
"""

from __future__ import annotations

import socket
import uuid

from twisted.python.filepath import FilePath

from redesdl.jsonfile import read_json, write_json_atomic


def load_identity(state: FilePath) -> str:
    """The id stored in C{state}, created on first use."""
    path = state.child("identity.json")
    stored = read_json(path, {})
    secondary_id = stored.get("id") if isinstance(stored, dict) else None
    if not isinstance(secondary_id, str) or not 8 <= len(secondary_id) <= 64:
        secondary_id = uuid.uuid4().hex
        write_json_atomic(path, {"id": secondary_id})
    return secondary_id


def default_name(secondary_id: str) -> str:
    return f"{socket.gethostname()}-{secondary_id[:8]}"
