"""Log lines about misbehaving peers, rate-limited per peer address.

A hostile or broken peer can send thousands of bad frames a second; logging
each would fill the disk and bury everything else. Every daemon logs at most
L{Complaints.perPeer} lines per peer address per L{Complaints.window}
seconds, then one line saying how many it left out. What a peer sent is in
the fields, escaped by L{printable} before it is logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger, LogLevel

from redesdl.printable import escape_event, printable

#: Addresses remembered at most; beyond this, stale entries are forgotten.
MAX_TRACKED_PEERS = 4096


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0


class Complaints:
    """Say what a peer did wrong, a few times per window at most."""

    log = Logger()

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        perPeer: int = 5,
        window: float = 60.0,
    ) -> None:
        self._clock = clock
        self.perPeer = perPeer
        self.window = window
        self._windows: dict[str, _Window] = {}

    def complain(
        self, peer: str, format: str, level: LogLevel = LogLevel.warn, **fields: Any
    ) -> None:
        """Log C{format} about C{peer} (an address) unless it said enough lately."""
        now = self._clock()
        window = self._windows.get(peer)
        if window is None or now - window.started >= self.window:
            if window is not None and window.suppressed:
                self.log.warn(
                    "{count} more complaints about {peer} were not logged",
                    count=window.suppressed,
                    peer=printable(peer),
                )
            if window is None and len(self._windows) >= MAX_TRACKED_PEERS:
                self._forgetStale(now)
            window = self._windows[peer] = _Window(now)
        if window.logged < self.perPeer:
            window.logged += 1
            escape_event(fields)
            self.log.emit(level, format, peer=printable(peer), **fields)
        else:
            window.suppressed += 1

    def _forgetStale(self, now: float) -> None:
        for peer, window in list(self._windows.items()):
            if now - window.started >= self.window:
                del self._windows[peer]
        if len(self._windows) >= MAX_TRACKED_PEERS:
            self._windows.clear()


#: The process's one record of complaints, shared by every protocol.
COMPLAINTS = Complaints()


def address_host(address: Any) -> str:
    """The host part of an address, for grouping by peer."""
    return str(getattr(address, "host", address))


def peer_host(transport: Any) -> str:
    """The host of C{transport}'s peer, for grouping complaints."""
    return address_host(transport.getPeer())
