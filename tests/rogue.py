"""Tiny chunk servers written from docs/protocol.md: an honest one and a rogue.

The rogue answers the client's first two pipelined ``get``s correctly, then
sends a second ``chunk`` header for the first id, already answered, followed
by garbage: the attack that once made ``get`` exit 0 with a corrupt file.
Any later ``get`` it answers honestly, so a client that does not drop it
finishes the download.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from redesdl.manifest import Manifest
from redesdl.protocol.sources import SourceAddress

_LENGTH = struct.Struct("!I")


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return _LENGTH.pack(len(body)) + body


class ChunkServer(Protocol):
    """Answer ``hello``, ``manifest`` and ``get`` for one file."""

    def __init__(self, server: FakeSecondary) -> None:
        self.server = server
        self.buffer = b""
        self.gets: list[dict[str, Any]] = []

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 4:
            (length,) = _LENGTH.unpack_from(self.buffer)
            if len(self.buffer) < 4 + length:
                return
            body, self.buffer = self.buffer[4 : 4 + length], self.buffer[4 + length :]
            self.received(json.loads(body))

    def received(self, message: dict[str, Any]) -> None:
        kind, request_id = message["type"], message.get("id")
        if kind == "hello":
            welcome = {"type": "welcome", "id": request_id, "version": 1}
            self.server.gate.addCallback(
                lambda _: self.transport.write(
                    frame({**welcome, "name": self.server.name})
                )
            )
        elif kind == "manifest":
            self.transport.write(
                frame(
                    {
                        "type": "manifest",
                        "id": request_id,
                        "manifest": self.server.manifest.to_wire(),
                    }
                )
            )
        elif kind == "get":
            self.gets.append(message)
            self.server.answer(self)

    def chunk(self, request_id: int, index: int) -> bytes:
        offset, length = self.server.manifest.chunk_range(index)
        return (
            frame({"type": "chunk", "id": request_id, "index": index, "length": length})
            + self.server.data[offset : offset + length]
        )


class FakeSecondary(Factory):
    """A chunk server for one file; C{rogue} to attack, C{gate} to hold hellos."""

    def __init__(
        self,
        name: str,
        manifest: Manifest,
        data: bytes,
        rogue: bool = False,
        gate: Deferred[None] | None = None,
    ) -> None:
        self.name = name
        self.manifest = manifest
        self.data = data
        self.rogue = rogue
        if gate is None:
            gate = Deferred()
            gate.callback(None)
        self.gate = gate
        #: Fires once the rogue has sent its attack.
        self.attacked: Deferred[None] = Deferred()
        self.port: Any = None

    def buildProtocol(self, addr: Any) -> ChunkServer:
        protocol = ChunkServer(self)
        return protocol

    def answer(self, connection: ChunkServer) -> None:
        if not self.rogue or self.attacked.called:
            message = connection.gets.pop()
            connection.transport.write(
                connection.chunk(message["id"], message["index"])
            )
            return
        if len(connection.gets) != 2:
            return
        first, second = connection.gets
        _, length = self.manifest.chunk_range(first["index"])
        connection.transport.write(
            connection.chunk(first["id"], first["index"])
            + connection.chunk(second["id"], second["index"])
            + frame(
                {
                    "type": "chunk",
                    "id": first["id"],
                    "index": first["index"],
                    "length": length,
                }
            )
            + b"\xde\xad" * (length // 2)
        )
        self.attacked.callback(None)

    async def listen(self, reactor: Any) -> SourceAddress:
        self.port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            self
        )
        return SourceAddress(self.name, "127.0.0.1", self.port.getHost().port)

    async def stop(self) -> None:
        if self.port is not None:
            await self.port.stopListening()


class Full(Protocol):
    """What a daemon over its caps does: say busy, hang up."""

    def connectionMade(self) -> None:
        busy = {
            "type": "error",
            "code": "busy",
            "message": "127.0.0.1 already holds 64 connections to this server",
        }
        self.transport.write(frame(busy))
        self.transport.loseConnection()


class FullSecondary(FakeSecondary):
    """A secondary that turns every connection away."""

    def buildProtocol(self, addr: Any) -> Full:  # type: ignore[override]
        return Full()
