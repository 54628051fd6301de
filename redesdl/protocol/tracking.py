"""A server factory that knows its open connections, to close them on stop.

Stopping a listening port leaves accepted connections open; a daemon that is
shutting down (or a test tearing down) closes them with L{disconnectAll}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory


class TrackingFactory(Factory):
    """Remember every protocol built until its connection is lost."""

    noisy = False

    def __init__(self) -> None:
        self.connections: set[Any] = set()

    def connected(self, protocol: Any) -> None:
        self.connections.add(protocol)

    def disconnected(self, protocol: Any) -> None:
        self.connections.discard(protocol)

    def disconnectAll(self) -> None:
        for protocol in list(self.connections):
            protocol.transport.loseConnection()
