"""What both daemons check before they start, so bad setup fails in one line.

Option syntax errors become ``UsageError`` (twistd prints usage and the
error); problems found on disk become ``SystemExit`` with one line naming
the daemon, the path and the reason, before anything starts.
"""

from __future__ import annotations

import os

from twisted.internet.endpoints import serverFromString
from twisted.python import usage
from twisted.python.filepath import FilePath


def check_server_endpoint(description: str) -> str:
    """Raise UsageError unless C{description} is a server endpoint string."""
    from twisted.internet import reactor

    try:
        serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as e:
        raise usage.UsageError(
            f"--listen {description!r} is not a valid endpoint description ({e})"
        ) from None
    return description


def prepare_state_dir(path: str, role: str) -> FilePath:
    """Create the state folder if missing; exit with one line if unusable."""
    state = FilePath(os.path.abspath(path))
    try:
        state.makedirs(ignoreExistingDirectory=True)
    except OSError as e:
        raise SystemExit(
            f"{role}: cannot create state folder {state.path}: {e.strerror}"
        ) from None
    if not os.access(state.path, os.W_OK | os.X_OK):
        raise SystemExit(f"{role}: state folder {state.path} is not writable")
    return state
