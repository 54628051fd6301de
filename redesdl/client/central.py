"""The client's conversation with the central: hello, list, locate."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint

from redesdl.endpoints import connect_protocol
from redesdl.manifest import FileInfo
from redesdl.protocol.messages import PROTOCOL_VERSION, MessageProtocol, items, mapping
from redesdl.protocol.sources import SourceAddress


class CentralConnection(MessageProtocol):
    """Requests a client sends the central, each answered by one reply."""

    maxFrameLength = 16 * 1024 * 1024

    def __init__(self, clientName: str) -> None:
        self._clientName = clientName
        self.welcomed: Deferred[dict[str, Any]] = Deferred()

    def connectionMade(self) -> None:
        super().connectionMade()
        self.request(
            {
                "type": "hello",
                "version": PROTOCOL_VERSION,
                "role": "client",
                "name": self._clientName,
            }
        ).chainDeferred(self.welcomed)

    async def list(self) -> list[dict[str, Any]]:
        reply = await self.request({"type": "list"})
        return [
            entry
            for entry in items(reply, "files", max_items=10**6)
            if isinstance(entry, dict)
        ]

    async def locate(self, name: str) -> tuple[FileInfo, list[SourceAddress]]:
        reply = await self.request({"type": "locate", "name": name})
        info = FileInfo.from_wire(mapping(reply, "file"))
        sources = [
            SourceAddress.from_wire(value)
            for value in items(reply, "sources", max_items=1024)
        ]
        return info, sources

    def close(self) -> None:
        self.transport.loseConnection()


async def connect_central(
    endpoint: IStreamClientEndpoint, clientName: str
) -> CentralConnection:
    """Connect and say hello; fail if the central is unreachable or refuses."""
    connection = await connect_protocol(endpoint, CentralConnection(clientName))
    await connection.welcomed
    return connection
