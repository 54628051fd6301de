"""A hand-written peer for integration tests: send raw bytes, read the frames back.

It speaks no redesdl itself, so a test can send exactly what a hostile peer
would (bad nesting, lone surrogates, messages at the wrong time) to a real
daemon on 127.0.0.1 and read what came back.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from redesdl.protocol.codec import decode_body


class RawPeer(Protocol):
    """Collect every frame the daemon sends; fire L{closed} when it hangs up."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(None)

    def frames(self) -> list[dict[str, Any]]:
        out, offset = [], 0
        while len(self.received) - offset >= 4:
            length = int.from_bytes(self.received[offset : offset + 4], "big")
            body = self.received[offset + 4 : offset + 4 + length]
            if len(body) < length:
                break
            out.append(decode_body(body))
            offset += 4 + length
        return out


async def connect(port: int) -> RawPeer:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    return await connectProtocol(endpoint, RawPeer())


def port_of(service: Any) -> int:
    return service.listener.port.getHost().port
