"""The client's conversation with the central: hello, list, locate, admit, report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from redesdl.client.access import EPHEMERAL_TOKEN
from redesdl.endpoints import connect_protocol
from redesdl.manifest import FileInfo
from redesdl.names import name_problem
from redesdl.protocol.messages import (
    MAX_FILES_PER_MESSAGE,
    PROTOCOL_VERSION,
    MessageProtocol,
    count,
    items,
    mapping,
    text,
)
from redesdl.protocol.sources import SourceAddress


class CentralConnection(MessageProtocol):
    """Requests a client sends the central, each answered by one reply."""

    maxFrameLength = 256 * 1024

    def __init__(self, clientName: str, token: str = EPHEMERAL_TOKEN) -> None:
        self._clientName = clientName
        self._token = token
        #: The latest download ticket the central gave for each file content.
        self.tickets: dict[str, dict[str, Any]] = {}
        self._positionListeners: dict[int, Callable[[int], None]] = {}
        self._closed: Deferred[None] = Deferred()
        self.welcomed: Deferred[dict[str, Any]] = Deferred()

    def connectionMade(self) -> None:
        super().connectionMade()
        self.request(
            {
                "type": "hello",
                "version": PROTOCOL_VERSION,
                "role": "client",
                "name": self._clientName,
                "token": self._token,
            }
        ).chainDeferred(self.welcomed)

    async def list(self) -> list[dict[str, Any]]:
        """The whole catalog, asked for page by page."""
        entries: list[dict[str, Any]] = []
        page: dict[str, Any] = {"type": "list"}
        while True:
            reply = await self.request(page)
            files = items(reply, "files", max_items=MAX_FILES_PER_MESSAGE)
            # A hostile central must not print escapes on our terminal.
            entries.extend(
                entry
                for entry in files
                if isinstance(entry, dict)
                and isinstance(entry.get("name"), str)
                and name_problem(entry["name"]) is None
            )
            if reply.get("more") is not True or not entries:
                return entries
            page = {"type": "list", "after": text(entries[-1], "name")}

    async def locate(self, name: str) -> tuple[FileInfo, list[SourceAddress]]:
        reply = await self.request({"type": "locate", "name": name})
        info = FileInfo.from_wire(mapping(reply, "file"))
        if isinstance(reply.get("ticket"), dict):
            self.tickets[info.sha256] = reply["ticket"]
        sources = [
            SourceAddress.from_wire(value)
            for value in items(reply, "sources", max_items=1024)
        ]
        return info, sources

    async def admit(
        self, name: str, onPosition: Callable[[int], None] | None = None
    ) -> float:
        """Wait for a download slot; return the seconds spent waiting.

        While queued, C{onPosition} hears our place in line each time it
        changes. The slot is ours until L{report} or until we disconnect.
        """
        request_id = self.allocateId()
        if onPosition is not None:
            self._positionListeners[request_id] = onPosition
        try:
            reply = await self.request({"type": "admit", "name": name}, request_id)
        finally:
            self._positionListeners.pop(request_id, None)
        return float(reply.get("queued_seconds", 0.0))

    def msg_queued(self, message: dict[str, Any]) -> None:
        listener = self._positionListeners.get(message.get("id"))
        if listener is not None:
            listener(count(message, "position"))

    def report(self, name: str, ok: bool, size: int, fetched: int, reason: str) -> None:
        """Tell the central how a download ended; this frees our slot.

        If the central is gone by then there is nothing to free; Twisted
        drops writes to a closed transport.
        """
        self.sendMessage(
            {
                "type": "report",
                "name": name,
                "ok": ok,
                "size": size,
                "bytes_fetched": fetched,
                "reason": reason,
            }
        )

    def reportBadReplica(self, name: str, sha256: str, source: str) -> None:
        """Tell the central C{source} sent bytes of C{name} that did not verify."""
        self.sendMessage(
            {"type": "bad_replica", "name": name, "sha256": sha256, "source": source}
        )

    def close(self) -> Deferred[None]:
        """Hang up once everything sent is written; fire when the line is closed.

        Waiting matters: a process that stops its reactor right after a
        C{report} would otherwise lose it.
        """
        self.transport.loseConnection()
        return self._closed

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if not self._closed.called:
            self._closed.callback(None)


async def connect_central(
    endpoint: IStreamClientEndpoint, clientName: str, token: str = EPHEMERAL_TOKEN
) -> CentralConnection:
    """Connect and say hello; fail if the central is unreachable or refuses."""
    connection = await connect_protocol(endpoint, CentralConnection(clientName, token))
    await connection.welcomed
    return connection
