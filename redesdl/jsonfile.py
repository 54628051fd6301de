"""Read and atomically write the JSON files every actor keeps.

A JSON file is written to a temporary file beside it, fsynced, and renamed
over the old one, so a crash leaves either the old or the new content, never
half of one. An unreadable file is moved aside so the actor can start fresh.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.logger import Logger
from twisted.python.filepath import FilePath

from redesdl.fsutil import fsync_directory

log = Logger()


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


def read_json(path: FilePath, default: Any) -> Any:
    """Load JSON from C{path}; C{default} if missing, set aside if unreadable."""
    try:
        with open(path.path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as e:
        aside = path.sibling(path.basename() + ".corrupt")
        log.warn(
            "{path} is unreadable ({error}); moved to {aside}, starting fresh",
            path=path.path,
            error=e,
            aside=aside.path,
        )
        try:
            os.replace(path.path, aside.path)
        except OSError:
            pass
        return default
