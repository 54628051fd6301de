"""``twistd redesdl-central``: options and service assembly, nothing else."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.task import cooperate
from twisted.python import usage

from redesdl.central.console import CentralCommands
from redesdl.central.metrics import central_metrics
from redesdl.central.protocol import CentralFactory
from redesdl.central.services import SLOT_IDLE_TIMEOUT
from redesdl.central.stats import CentralStats, fresh_central_stats
from redesdl.central.web.service import (
    WEB_PARAMETERS,
    check_web_options,
    web_service,
)
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
from redesdl.listening import ListeningService
from redesdl.metrics import METRICS_PARAMETER, metrics_service
from redesdl.reactor_lag import ReactorLag
from redesdl.stats import StatsFile
from redesdl.trace import TRACER

ROLE = "redesdl-central"


class Options(DaemonOptions):
    """Command-line options of ``twistd redesdl-central``."""

    role = ROLE
    optFlags = CONSOLE_FLAGS

    optParameters = [
        [
            "listen",
            "l",
            "tcp:7000:interface=127.0.0.1",
            "Twisted server endpoint to listen on (tcp:7000 for every interface; "
            "backlog 1024 unless it names backlog=).",
        ],
        [
            "state-dir",
            "s",
            ".redesdl-central",
            "Folder for the central's own files; created if missing.",
        ],
        [
            "stats-interval",
            None,
            10.0,
            "Seconds between saves of the statistics while they change.",
            float,
        ],
        [
            "heartbeat-timeout",
            None,
            15.0,
            "Drop a secondary that sends nothing (not even a heartbeat) for this "
            "many seconds.",
            float,
        ],
        [
            "max-active",
            None,
            5,
            "Most client downloads running at once; the others wait in order.",
            int,
        ],
        [
            "slot-idle-timeout",
            None,
            SLOT_IDLE_TIMEOUT,
            "Take a download slot back from a client that has not located its "
            "file for this many seconds (clients locate every 3 s while "
            "downloading).",
            float,
        ],
        [
            "min-secondaries",
            None,
            1,
            "Hold downloads back until this many secondaries are registered.",
            int,
        ],
        *LIMIT_PARAMETERS,
        *SECURITY_PARAMETERS,
        METRICS_PARAMETER,
        *WEB_PARAMETERS,
    ]

    def postOptions(self) -> None:
        check_seconds(self, "stats-interval")
        check_server_endpoint(self["listen"])
        check_seconds(self, "heartbeat-timeout")
        check_seconds(self, "slot-idle-timeout")
        if self["max-active"] < 1:
            raise usage.UsageError("--max-active must be 1 or more")
        if self["min-secondaries"] < 0:
            raise usage.UsageError("--min-secondaries must be 0 or more")
        self.limits = connection_limits(self)
        if self["metrics"] is not None:
            check_server_endpoint(self["metrics"], "--metrics")
        if self["web"] is not None:
            check_server_endpoint(self["web"], "--web")
        check_web_options(self)


def makeService(config: Options, reactor: Any = None) -> IService:
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    state = prepare_state_dir(config["state-dir"], ROLE)
    secret, tls = load_security(config, ROLE)
    stats = StatsFile(
        state.child("stats.json"),
        ROLE,
        fresh_central_stats,
        reactor,
        interval=config["stats-interval"],
    )
    factory = CentralFactory(
        reactor,
        CentralStats(stats),
        minSecondaries=config["min-secondaries"],
        maxActive=config["max-active"],
        heartbeatTimeout=config["heartbeat-timeout"],
        idleTimeout=config["idle-timeout"],
        slotIdleTimeout=config["slot-idle-timeout"],
        limits=config.limits,
        secret=secret,
        cooperate=cooperate,
    )
    factory.removals.keep_in(state.child("removed.json"))
    top = MultiService()
    stats.setServiceParent(top)
    lag = ReactorLag(reactor)
    lag.setServiceParent(top)
    listener = ListeningService(config["listen"], factory, ROLE, reactor, tls)
    listener.setServiceParent(top)
    if config["metrics"] is not None:
        metrics_service(
            config["metrics"],
            lambda: [*central_metrics(factory), *lag.metrics()],
            ROLE,
            reactor,
        ).setServiceParent(top)
    web = None
    if config["web"] is not None:
        web = web_service(config["web"], config.web_token, factory, ROLE, reactor)
        web.setServiceParent(top)
    TRACER.enabled = bool(config["trace"])
    if wants_console(config):
        ConsoleService(
            CentralCommands(factory),
            "central> ",
            "redesdl-central console; type 'help'",
            reactor,
        ).setServiceParent(top)
    top.factory = factory  # type: ignore[attr-defined]
    top.listener = listener  # type: ignore[attr-defined]
    top.web = web  # type: ignore[attr-defined]
    return top
