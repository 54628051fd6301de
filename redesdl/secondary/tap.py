"""``twistd redesdl-secondary``: options and service assembly, nothing else."""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.filepath import FilePath

from redesdl.daemon import (
    CONSOLE_FLAGS,
    LIMIT_PARAMETERS,
    SECURITY_PARAMETERS,
    ConsoleService,
    DaemonOptions,
    check_seconds,
    check_server_endpoint,
    connection_limits,
    load_security,
    prepare_state_dir,
    wants_console,
)
from redesdl.endpoints import central_endpoint
from redesdl.metrics import METRICS_PARAMETER, metrics_service
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.sources import central_addresses, parse_host_port
from redesdl.protocol.wire import peer_name
from redesdl.reactor_lag import SECONDARY_TICK, ReactorLag
from redesdl.secondary.console import SecondaryCommands
from redesdl.secondary.identity import default_name, load_identity
from redesdl.secondary.index import DataIndex
from redesdl.secondary.metrics import secondary_metrics
from redesdl.secondary.ratelimit import parse_rate
from redesdl.secondary.sendbuffer import (
    DEFAULT_SEND_BUFFER,
    kernel_send_limits,
    parse_send_buffer,
    send_buffer_request,
    unasked_reason,
)
from redesdl.secondary.service import ROLE, SecondaryService
from redesdl.secondary.stats import SecondaryStats, fresh_secondary_stats
from redesdl.stats import StatsFile
from redesdl.trace import TRACER
from redesdl.transfer.allocator import keep_freed_buffers

log = Logger()


class Options(DaemonOptions):
    """Command-line options of ``twistd redesdl-secondary``."""

    role = ROLE
    optFlags = [
        *CONSOLE_FLAGS,
        [
            "require-tickets",
            None,
            "Serve files only to clients holding a download ticket from the "
            "central (needs --secret-file).",
        ],
    ]

    optParameters = [
        [
            "listen",
            "l",
            "tcp:7101:interface=127.0.0.1",
            "Twisted server endpoint the chunk server listens on (backlog 1024 "
            "unless it names backlog=).",
        ],
        [
            "central",
            "c",
            "127.0.0.1:7000",
            "The central, as HOST:PORT or a Twisted client endpoint string; "
            "several, separated by commas, to register with each.",
        ],
        ["data", "d", None, "The folder of files to serve (required)."],
        [
            "state-dir",
            "s",
            ".redesdl-secondary",
            "Folder for this secondary's own files (index cache, identity).",
        ],
        [
            "name",
            "n",
            None,
            "Unique name in the cluster [default: HOSTNAME-<id prefix>, stable].",
        ],
        [
            "advertise",
            None,
            None,
            "HOST:PORT clients should use [default: the address the central sees, "
            "with the listening port].",
        ],
        [
            "rate-limit",
            None,
            None,
            "Most bytes per second sent to all clients together, such as 512K, "
            "2M or 1G (powers of 1024) [default: no limit].",
        ],
        [
            "send-buffer",
            None,
            f"{DEFAULT_SEND_BUFFER // 1024**2}M",
            "Socket send buffer asked for each plain-TCP connection, such as 4M; "
            "'auto' leaves it to the kernel. Asked only where net.core.wmem_max "
            "allows more than the kernel would grow it to.",
        ],
        [
            "heartbeat-interval",
            None,
            5.0,
            "Seconds between heartbeats to the central.",
            float,
        ],
        [
            "heartbeat-timeout",
            None,
            15.0,
            "Reconnect when the central says nothing for this many seconds.",
            float,
        ],
        [
            "stats-interval",
            None,
            10.0,
            "Seconds between saves of the statistics while they change.",
            float,
        ],
        [
            "rescan-interval",
            None,
            5.0,
            "Seconds between scans of the data folder for changes.",
            float,
        ],
        *LIMIT_PARAMETERS,
        *SECURITY_PARAMETERS,
        METRICS_PARAMETER,
    ]

    def postOptions(self) -> None:
        if self["rate-limit"] is not None:
            try:
                self["rate-limit"] = parse_rate(self["rate-limit"])
            except ValueError as e:
                raise usage.UsageError(f"--rate-limit: {e}") from None
        try:
            self["send-buffer"] = parse_send_buffer(self["send-buffer"])
        except ValueError as e:
            raise usage.UsageError(f"--send-buffer: {e}") from None
        check_seconds(self, "heartbeat-interval", "heartbeat-timeout")
        if not self["heartbeat-interval"] < self["heartbeat-timeout"]:
            raise usage.UsageError(
                "--heartbeat-interval must be positive and below --heartbeat-timeout"
            )
        check_seconds(self, "stats-interval")
        check_server_endpoint(self["listen"])
        if not self["data"]:
            raise usage.UsageError("--data FOLDER is required")
        if self["name"] is not None:
            try:
                peer_name({"name": self["name"]}, "name")
            except ProtocolError as e:
                raise usage.UsageError(f"--name: {e.message}") from None
        from twisted.internet import reactor

        try:
            for central in central_addresses(self["central"]):
                central_endpoint(reactor, central)
            if self["advertise"] is not None:
                parse_host_port(self["advertise"])
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        check_seconds(self, "rescan-interval")
        self.limits = connection_limits(self)
        if self["metrics"] is not None:
            check_server_endpoint(self["metrics"], "--metrics")
        if self["require-tickets"] and not self["secret-file"]:
            raise usage.UsageError("--require-tickets needs --secret-file")


def makeService(config: Options, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    data = FilePath(os.path.abspath(config["data"]))
    if not data.isdir() or not os.access(data.path, os.R_OK | os.X_OK):
        raise SystemExit(
            f"{ROLE}: data folder {data.path} does not exist or cannot be read"
        )
    state = prepare_state_dir(config["state-dir"], ROLE)
    secret, tls = load_security(config, ROLE)
    try:
        secondary_id, boot = load_identity(state)
    except OSError as e:
        raise SystemExit(
            f"{ROLE}: cannot keep its identity in {state.path}: "
            f"{e.strerror or e} ({e.filename})"
        ) from None
    TRACER.enabled = bool(config["trace"])
    # Replication receives through the client's transfer engine.
    keep_freed_buffers()
    send_limits = kernel_send_limits()
    unasked = unasked_reason(config["send-buffer"], send_limits)
    if unasked is not None:
        log.info("--send-buffer left to the kernel: {why}", why=unasked)
    secondary = SecondaryService(
        reactor=reactor,
        listen=config["listen"],
        centrals=[
            (central_endpoint(reactor, central, tls=tls), central)
            for central in central_addresses(config["central"])
        ],
        index=DataIndex(data, state.child("index.json")),
        name=config["name"] or default_name(secondary_id),
        secondaryId=secondary_id,
        boot=boot,
        stats=SecondaryStats(
            StatsFile(
                state.child("stats.json"),
                ROLE,
                fresh_secondary_stats,
                reactor,
                interval=config["stats-interval"],
            )
        ),
        advertise=config["advertise"],
        rescanInterval=config["rescan-interval"],
        rateLimit=config["rate-limit"],
        sendBuffer=send_buffer_request(config["send-buffer"], send_limits),
        heartbeatInterval=config["heartbeat-interval"],
        heartbeatTimeout=config["heartbeat-timeout"],
        idleTimeout=config["idle-timeout"],
        limits=config.limits,
        secret=secret,
        tls=tls,
        requireTickets=bool(config["require-tickets"]),
    )
    if wants_console(config):
        ConsoleService(
            SecondaryCommands(secondary),
            f"{secondary.name}> ",
            f"redesdl-secondary {secondary.name} console; type 'help'",
            reactor,
        ).setServiceParent(secondary)
    lag = ReactorLag(reactor, SECONDARY_TICK)
    lag.setServiceParent(secondary)
    if config["metrics"] is not None:
        metrics_service(
            config["metrics"],
            lambda: [*secondary_metrics(secondary), *lag.metrics()],
            ROLE,
            reactor,
        ).setServiceParent(secondary)
    return secondary
