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

import twisted
from redesdl import __version__
from redesdl.console import CommandSet, attach_console
from redesdl.protocol.auth import SecretFileError, load_secret
from redesdl.protocol.tracking import ConnectionLimits
from redesdl.tls import TLS_PARAMETERS, TLSConfig, TLSFileError

#: Options that bound what peers may hold on either daemon's server.
LIMIT_PARAMETERS = [
    [
        "idle-timeout",
        None,
        60.0,
        "Close a connection that sends and takes nothing for this many seconds.",
        float,
    ],
    [
        "max-connections",
        None,
        1024,
        "Most connections the server holds at once.",
        int,
    ],
    [
        "max-per-peer",
        None,
        64,
        "Most connections one peer address may hold at once.",
        int,
    ],
]


#: Options that decide who may join the cluster and how it talks.
SECURITY_PARAMETERS = [
    [
        "secret-file",
        None,
        None,
        "File holding the cluster secret (mode 600) [default: none, so the "
        "cluster is open to any host that can reach it].",
    ],
    *TLS_PARAMETERS,
]


def load_security(config: usage.Options, role: str) -> tuple[Any, Any]:
    """The cluster secret and TLS config named by C{config}; exit on a bad file."""
    try:
        secret = load_secret(config["secret-file"]) if config["secret-file"] else None
        tls = TLSConfig.fromOptions(config)
    except (SecretFileError, TLSFileError) as e:
        raise SystemExit(f"{role}: {e}") from None
    return secret, tls


class DaemonOptions(usage.Options):
    """Options both daemons share the handling of; subclasses set C{role}."""

    role = "redesdl"

    def opt_version(self) -> None:
        """Print the versions of redesdl and Twisted, then exit."""
        print(f"{self.role} {__version__} (Twisted {twisted.__version__})")
        raise SystemExit(0)


def connection_limits(config: usage.Options) -> ConnectionLimits:
    """The L{LIMIT_PARAMETERS} of C{config}, checked; UsageError if out of range."""
    if config["idle-timeout"] <= 0:
        raise usage.UsageError("--idle-timeout must be positive")
    if config["max-connections"] < 1 or config["max-per-peer"] < 1:
        raise usage.UsageError("--max-connections and --max-per-peer must be 1 or more")
    return ConnectionLimits(config["max-connections"], config["max-per-peer"])


def check_server_endpoint(description: str, option: str = "--listen") -> str:
    """Raise UsageError unless C{description} is a server endpoint string."""
    from twisted.internet import reactor

    try:
        serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as e:
        raise usage.UsageError(
            f"{option} {description!r} is not a valid endpoint description ({e})"
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
