"""A server factory that knows its open connections and caps them.

Stopping a listening port leaves accepted connections open; a daemon that is
shutting down (or a test tearing down) closes them with L{disconnectAll}.
The same bookkeeping bounds how many connections one peer address, and all
peers together, may hold: a connection over either cap is answered with a
typed ``busy`` error and closed, so hundreds of idle sockets from one host
cannot starve everyone else.

Closed within L{CLOSE_GRACE}: over TLS a polite close waits for the peer's
close_notify, and first for its handshake if our last words are still to
go, so a peer that stays silent would otherwise keep the connection, and its
file descriptor, for ever.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import TimeoutMixin

from redesdl.protocol.codec import encode
from redesdl.protocol.complaints import COMPLAINTS, address_host, peer_host
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import Error


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections a server accepts in all and from one address."""

    total: int = 1024
    perPeer: int = 64


DEFAULT_LIMITS = ConnectionLimits()


class ConnectionCounts:
    """The connections a server holds, in all and per address, against its
    L{ConnectionLimits}: why a new one is refused, if it is."""

    def __init__(self, limits: ConnectionLimits, server: str = "server") -> None:
        self.limits = limits
        self._server = server
        self._per_peer: Counter[str] = Counter()
        self.total = 0

    def refusal(self, host: str) -> str | None:
        """Why a new connection from C{host} is over a cap; None if it is not."""
        if self.total >= self.limits.total:
            return f"the {self._server} holds {self.limits.total} connections"
        if self._per_peer[host] >= self.limits.perPeer:
            return (
                f"{host} already holds {self.limits.perPeer} connections to this "
                f"{self._server}"
            )
        return None

    def add(self, host: str) -> None:
        self.total += 1
        self._per_peer[host] += 1

    def remove(self, host: str) -> None:
        self.total -= 1
        self._per_peer[host] -= 1
        if not self._per_peer[host]:
            del self._per_peer[host]


#: Seconds a peer we hang up on has to take our last words and let the
#: connection close, before it is cut.
CLOSE_GRACE = 5.0


class OverCapacity(Protocol, TimeoutMixin):
    """Say why the connection is refused, then hang up (within a grace)."""

    def __init__(self, why: str, grace: float, clock: Any | None) -> None:
        self._why = why
        self._grace = grace
        if clock is not None:
            self.callLater = clock.callLater

    def connectionMade(self) -> None:
        COMPLAINTS.complain(
            peer_host(self.transport),
            "refused a connection from {peer}: {why}",
            why=self._why,
        )
        self.transport.write(encode(Error.of(ProtocolError("busy", self._why))))
        self.transport.loseConnection()
        # Counted under no cap: it must not outlive the grace either.
        self.setTimeout(self._grace)

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()

    def connectionLost(self, reason: Any) -> None:
        self.setTimeout(None)


class TrackingFactory(Factory):
    """Remember every protocol built until its connection is lost."""

    noisy = False
    #: Seconds a connection hung up on has to close before it is cut.
    closeGrace = CLOSE_GRACE
    #: The reactor's clock, which subclasses give.
    clock: Any = None

    def __init__(self, limits: ConnectionLimits = DEFAULT_LIMITS) -> None:
        self.connections: set[Any] = set()
        self.limits = limits
        self._counts = ConnectionCounts(limits)

    def buildProtocol(self, addr: Any) -> Protocol | None:
        why = self._counts.refusal(address_host(addr))
        if why is not None:
            return OverCapacity(why, self.closeGrace, self.clock)
        return super().buildProtocol(addr)

    def connected(self, protocol: Any) -> None:
        self.connections.add(protocol)
        protocol.trackedHost = peer_host(protocol.transport)
        self._counts.add(protocol.trackedHost)

    def disconnected(self, protocol: Any) -> None:
        if protocol in self.connections:
            self.connections.discard(protocol)
            self._counts.remove(protocol.trackedHost)

    def disconnectAll(self) -> None:
        for protocol in list(self.connections):
            # A producer still registered would keep the connection open.
            protocol.transport.unregisterProducer()
            protocol.transport.loseConnection()
