"""How long the reactor was held: the daemon's own watch on its event loop.

A daemon that holds its reactor too long reads heartbeats late and takes
live peers for hung, so each daemon measures it: a delayed call due every
L{TICK} seconds fires late by about the length of the turn that held the
reactor when it fell due. (One call at a time, each measured against its own
due time: LoopingCall keeps a grid and would hide part of the lateness.)
L{ReactorLag} keeps the worst lateness and counts turns over L{STALL}
seconds for metrics, and logs one warning a minute at most when a turn
passed L{WARN_AFTER} seconds.

Each wake costs, even idle: a timer every 25 ms alone costs 0.5% of a core
here (0.05% every 250 ms). The central, whose turns must stay short at a
million records, watches every L{TICK}; a secondary, whose turns are one
request or one sendfile call, every L{SECONDARY_TICK}: it sees every turn
longer than that, and a shorter one over L{STALL} only if it falls due
during that turn.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import Metric
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from redesdl.metrics import COUNTER, GAUGE, families

TICK = 0.025
SECONDARY_TICK = 0.25
#: A turn this long is a stall: heartbeats wait behind it.
STALL = 0.05
WARN_AFTER = 1.0
WARN_EVERY = 60.0


class ReactorLag(Service):
    """Measure, while running, how late the reactor runs a timer."""

    log = Logger()

    def __init__(self, clock: Any, tick: float = TICK) -> None:
        self._clock = clock
        self._tick = tick
        self._timer: IDelayedCall | None = None
        self._last_warning: float | None = None
        self.max_lag = 0.0
        self.stalls = 0

    def startService(self) -> None:
        super().startService()
        self._timer = self._clock.callLater(self._tick, self._fired)

    def stopService(self) -> None:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()

    def _fired(self) -> None:
        assert self._timer is not None
        now = self._clock.seconds()
        lag = max(0.0, now - self._timer.getTime())
        self._timer = self._clock.callLater(self._tick, self._fired)
        self.max_lag = max(self.max_lag, lag)
        if lag > STALL:
            self.stalls += 1
        if lag > WARN_AFTER and (
            self._last_warning is None or now - self._last_warning >= WARN_EVERY
        ):
            self._last_warning = now
            self.log.warn(
                "the reactor was held {lag:.1f} s: peers may have been read late",
                lag=lag,
            )

    def metrics(self) -> list[Metric]:
        """What it measured, for the daemon's /metrics."""
        return families([
            (GAUGE, "redesdl_reactor_lag_max_seconds",
             "Longest the reactor ran a due timer late since start.", self.max_lag),
            (COUNTER, "redesdl_reactor_stalls",
             f"Timers run over {STALL:g} s late (a turn held that long).",
             self.stalls),
        ])  # fmt: skip
