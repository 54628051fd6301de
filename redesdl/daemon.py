"""What both daemons check before they start, so bad setup fails in one line.

Option syntax errors become ``UsageError`` (twistd prints usage and the
error); problems found on disk become ``SystemExit`` with one line naming
the daemon, the path and the reason, before anything starts.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.python import usage
from twisted.python.filepath import FilePath

from redesdl.console import CommandSet, attach_console


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


#: Options both daemons share, for their console and protocol trace.
CONSOLE_FLAGS = [
    [
        "console",
        None,
        "Open the console on stdin even if it is not a terminal "
        "(never when daemonized).",
    ],
    ["trace", None, "Log every protocol message sent and received."],
]


def wants_console(config: usage.Options) -> bool:
    """A console on stdin: in the foreground, on a terminal or when asked for."""
    parent = getattr(config, "parent", None)
    foreground = parent is not None and bool(parent.get("nodaemon"))
    return foreground and bool(config["console"] or sys.stdin.isatty())


class ConsoleService(Service):
    """Run an actor's console on stdin while the daemon runs.

    End of input (Ctrl-D) stops the daemon the same clean way SIGTERM does.
    """

    def __init__(
        self, commands: CommandSet, prompt: str, greeting: str, reactor: Any
    ) -> None:
        self._commands = commands
        self._prompt = prompt
        self._greeting = greeting
        self._reactor = reactor

    def startService(self) -> None:
        super().startService()
        self._commands.quit = self._leave
        attach_console(
            self._commands,
            self._prompt,
            self._leave,
            terminal=False,
            greeting=self._greeting,
        )

    def _leave(self) -> None:
        if self._reactor.running:
            self._reactor.stop()
