"""The client's remembered name: what ``INSCRIBIR NAME`` chose, for later sessions.

It is kept in ``client.json`` in the client's state folder (beside its token),
written with a temporary file, fsync and rename. A file that is not a JSON
object with a ``name`` the central would take (1 to 256 printable characters)
is set aside as ``client.json.corrupt`` with one warning, and the default
name is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.python.filepath import FilePath

from redesdl.jsonfile import read_json, record, text, validator, write_json_atomic
from redesdl.protocol.wire import MAX_PEER_NAME

FILE_NAME = "client.json"

_RECORD = validator(record({"name": text}))


def _usable(value: Any) -> None:
    """A JSON object whose ``name`` the central would take as a client's."""
    _RECORD(value)
    name = value["name"]
    if not 0 < len(name) <= MAX_PEER_NAME or not name.isprintable():
        raise ValueError(f"its name is not 1 to {MAX_PEER_NAME} printable characters")


def remembered_name(folder: Path) -> str | None:
    """The name chosen in an earlier session, if any."""
    stored = read_json(FilePath(str(folder / FILE_NAME)), None, check=_usable)
    return None if stored is None else stored["name"]


def remember_name(folder: Path, name: str) -> None:
    """Keep C{name} for the next sessions (raises OSError if it cannot)."""
    write_json_atomic(FilePath(str(folder / FILE_NAME)), {"name": name})
