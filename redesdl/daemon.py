"""What both daemons check before they start, so bad setup fails in one line.

A bad option becomes one line naming the daemon, the option and ``--help``
(twistd would print its whole usage before the error); problems found on
disk become ``SystemExit`` with one line naming the daemon, the path and the
reason, before anything starts. Parsing a
daemon's options also makes its log safe for peer strings (L{escape_logs})
and sizes its descriptor budget (L{connection_limits}).
"""

from __future__ import annotations

import math
import os
import re
import resource
import socket
import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.logger import Logger, LogPublisher, globalLogPublisher
from twisted.python import usage
from twisted.python.filepath import FilePath

import twisted
from redesdl import __version__
from redesdl.console import CommandSet, LogAbovePrompt, attach_console
from redesdl.printable import escape_logs
from redesdl.protocol.auth import SecretFileError, load_secret
from redesdl.shells.tracking import ConnectionLimits
from redesdl.tlsoptions import TLS_PARAMETERS, TLSFileError, tls_from_options


def check_seconds(options: Any, *names: str) -> None:
    """Each option named is a finite number of seconds above zero.

    Python's C{float} takes ``nan`` and ``inf``, which pass a C{<= 0} check
    and then fail deep inside a timer on every connection.
    """
    for name in names:
        value = options[name]
        if not value > 0:
            raise usage.UsageError(f"--{name} must be positive")
        if value == math.inf:
            raise usage.UsageError(f"--{name} must be finite")


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
        tls = tls_from_options(config)
    except (SecretFileError, TLSFileError) as e:
        raise SystemExit(f"{role}: {e}") from None
    return secret, tls


log = Logger()


#: Twisted's own line when a port listens ("CentralFactory starting on 7000"):
#: L{ListeningService} says the same with the role's name and the address.
_PORT_ANNOUNCEMENT = re.compile(r"[\w. -]+ starting on \d+")


def _blank_port_announcement(event: dict[str, Any]) -> None:
    text = event.get("log_text")
    if isinstance(text, str) and _PORT_ANNOUNCEMENT.fullmatch(text):
        # An event with no text is written by no log file observer.
        event["log_format"] = event["log_text"] = ""
        event["message"] = ()


def quiet_port_announcements(publisher: LogPublisher = globalLogPublisher) -> None:
    """Keep Twisted's "Factory starting on PORT" lines out of the daemons' logs.

    Like L{escape_logs}, it runs before twistd's own observers and changes
    the event for them; adding it twice changes nothing.
    """
    publisher.addObserver(_blank_port_announcement)


class DaemonOptions(usage.Options):
    """Options both daemons share the handling of; subclasses set C{role}."""

    role = "redesdl"

    def parseOptions(self, options: list[str] | None = None) -> None:
        escape_logs()
        quiet_port_announcements()
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            # twistd answers a UsageError with its ~60 lines of usage first;
            # leaving by SystemExit skips that and prints this line alone.
            raise SystemExit(f"{self.role}: {e} (see --help)") from None

    def opt_version(self) -> None:
        """Print the versions of redesdl and Twisted, then exit."""
        print(f"{self.role} {__version__} (Twisted {twisted.__version__})")
        raise SystemExit(0)


#: Descriptors kept back from connections: state, stats and index files,
#: listening and metrics sockets, the link to the central, replication, logs.
DESCRIPTOR_RESERVE = 64
#: A secondary holds a file open beside each connection it serves a chunk on.
DESCRIPTORS_PER_CONNECTION = {"redesdl-secondary": 2}
#: The soft limit asked for when the hard limit is unlimited.
UNLIMITED_TARGET = 1 << 20


def descriptor_budget(
    soft: int,
    hard: int,
    requested: int,
    per_connection: int = 1,
    reserve: int = DESCRIPTOR_RESERVE,
    infinity: int = resource.RLIM_INFINITY,
) -> tuple[int, int]:
    """The soft limit to set and the connection cap that fits under it.

    The soft limit goes up to the hard one; the cap is C{requested}, or fewer
    when the limit minus C{reserve} cannot hold C{per_connection} descriptors
    for each (never below 1).
    """
    if hard == infinity:
        target = soft if soft == infinity else max(soft, UNLIMITED_TARGET)
    else:
        target = max(soft, hard) if soft == infinity else hard
    if target == infinity:
        return target, requested
    fits = max(1, (target - reserve) // per_connection)
    return target, min(requested, fits)


def fit_descriptors(
    requested: int, per_connection: int, role: str, rlimits: Any = resource
) -> int:
    """Raise the soft C{RLIMIT_NOFILE} to the hard limit; the cap that fits.

    Logs the limit it got, and one more line if C{requested} connections had
    to be lowered. C{rlimits} is the L{resource} module or a fake of it.
    """
    soft, hard = rlimits.getrlimit(rlimits.RLIMIT_NOFILE)
    target, _ = descriptor_budget(soft, hard, requested, per_connection)
    if target != soft:
        try:
            rlimits.setrlimit(rlimits.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as e:
            log.warn(
                "{role}: cannot raise the open files limit from {soft} to {target}: "
                "{error}",
                role=role,
                soft=soft,
                target=target,
                error=e,
            )
            target = soft
    log.info(
        "{role}: open files limit {limit} (was {soft}, hard limit {hard})",
        role=role,
        limit=_limit_text(target),
        soft=_limit_text(soft),
        hard=_limit_text(hard),
    )
    _, allowed = descriptor_budget(target, target, requested, per_connection)
    if allowed < requested:
        log.warn(
            "{role}: --max-connections {requested} lowered to {allowed}: "
            "{limit} open files, {reserve} kept for files and sockets",
            role=role,
            requested=requested,
            allowed=allowed,
            limit=target,
            reserve=DESCRIPTOR_RESERVE,
        )
    return allowed


def _limit_text(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


def connection_limits(
    config: usage.Options, rlimits: Any = resource
) -> ConnectionLimits:
    """The L{LIMIT_PARAMETERS} of C{config}, checked; UsageError if out of range.

    The total is held under what the process can open (L{fit_descriptors}),
    so a full server answers ``busy`` instead of failing in ``accept``.
    """
    check_seconds(config, "idle-timeout")
    if config["max-connections"] < 1 or config["max-per-peer"] < 1:
        raise usage.UsageError("--max-connections and --max-per-peer must be 1 or more")
    role = getattr(config, "role", "redesdl")
    total = fit_descriptors(
        config["max-connections"],
        DESCRIPTORS_PER_CONNECTION.get(role, 1),
        role,
        rlimits,
    )
    return ConnectionLimits(total, config["max-per-peer"])


def check_server_endpoint(description: str, option: str = "--listen") -> str:
    """Raise UsageError unless C{description} is a server endpoint string."""
    from twisted.internet import reactor

    try:
        endpoint = serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as e:
        raise usage.UsageError(
            f"{option} {description!r} is not a valid endpoint description ({e})"
        ) from None
    if isinstance(endpoint, AdoptedStreamServerEndpoint):
        _check_adopted_family(endpoint, description, option)
    return description


def _check_adopted_family(
    endpoint: AdoptedStreamServerEndpoint, description: str, option: str
) -> None:
    """Refuse a systemd socket of another family than the endpoint names.

    Adopted under the wrong family, an IPv6 socket still accepts, but every
    peer address reads as garbage (and the central hands clients those).
    """
    try:
        with socket.socket(fileno=os.dup(endpoint.fileno)) as inherited:
            family = inherited.family
    except OSError:
        return
    if family == endpoint.addressFamily:
        return
    named = socket.AddressFamily(endpoint.addressFamily).name[3:]
    raise usage.UsageError(
        f"{option} {description!r} names domain={named} but the socket systemd "
        f"passed is {family.name[3:]}; give the socket unit an address of that "
        "family (ListenStream=0.0.0.0:PORT for INET; a bare port is INET6 on "
        "dual-stack hosts)"
    )


def prepare_state_dir(path: str, role: str) -> FilePath:
    """Create the state folder if missing; exit with one line if unusable."""
    if not path:
        raise SystemExit(f"{role}: --state-dir is empty; name a folder")
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
    On a terminal the line is edited in place and twistd's log lines are kept
    above the prompt, so the frame around them is set up now, before twistd
    adds its log observer.
    """

    def __init__(
        self, commands: CommandSet, prompt: str, greeting: str, reactor: Any
    ) -> None:
        self._commands = commands
        self._prompt = prompt
        self._greeting = greeting
        self._reactor = reactor
        self._terminal = sys.stdin.isatty()
        self._log_frame = LogAbovePrompt() if self._terminal else None

    def startService(self) -> None:
        super().startService()
        self._commands.quit = self._leave
        attach_console(
            self._commands,
            self._prompt,
            self._leave,
            terminal=self._terminal,
            greeting=self._greeting,
            log_frame=self._log_frame,
        )

    def _leave(self) -> None:
        if self._reactor.running:
            self._reactor.stop()
