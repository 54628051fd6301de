"""The secondary's server side: manifests and byte ranges for clients and peers.

A connection says ``hello``, then pipelines ``manifest`` and ``get`` requests.
Replies go out strictly in request order, because a ``chunk`` header is
followed by raw bytes that nothing may interleave with. Each range is written
by a pull producer, one block per pull, so memory stays bounded whatever the
file size and however slow the reader.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPullProducer
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from redesdl.names import validate_name
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.messages import (
    PROTOCOL_VERSION,
    MessageProtocol,
    count,
    digest,
    text,
)
from redesdl.protocol.tickets import Tickets
from redesdl.protocol.tracking import (
    DEFAULT_LIMITS,
    ConnectionLimits,
    TrackingFactory,
)
from redesdl.secondary.index import DataIndex, IndexEntry
from redesdl.secondary.ratelimit import TokenBucket
from redesdl.secondary.stats import SecondaryStats

#: Requests a client may have queued on one connection before it is refused.
MAX_QUEUED_REQUESTS = 64


@implementer(IPullProducer)
class RangeProducer:
    """Write C{length} bytes of an open file from C{offset}, one block per pull.

    With a L{TokenBucket}, a block the bucket cannot pay for yet is written
    by a timer once it can; meanwhile nothing is written, so the connection
    idles (the transport asks for more only after a write drains).
    """

    blockSize = 1024 * 1024

    def __init__(
        self,
        fd: int,
        offset: int,
        length: int,
        consumer: IConsumer,
        limiter: TokenBucket | None = None,
        clock: Any = None,
        onBlock: Any = None,
    ) -> None:
        self._fd = fd
        self._onBlock = onBlock
        self._offset = offset
        self._remaining = length
        self._consumer = consumer
        self._limiter = limiter
        self._clock = clock
        self._delayed: IDelayedCall | None = None
        self.finished: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        self._consumer.registerProducer(self, False)
        return self.finished

    def resumeProducing(self) -> None:
        if self._delayed is not None or self.finished.called:
            return
        size = min(self.blockSize, self._remaining)
        if self._limiter is not None:
            size = min(size, self._limiter.blockSize)
        try:
            block = os.pread(self._fd, size, self._offset)
            if not block:
                raise OSError("the file is shorter than its manifest says")
        except OSError as e:
            self._finish(e)
            return
        self._offset += len(block)
        self._remaining -= len(block)
        wait = self._limiter.take(len(block)) if self._limiter is not None else 0.0
        if wait > 0:
            self._delayed = self._clock.callLater(wait, self._write, block)
        else:
            self._write(block)

    def _write(self, block: bytes) -> None:
        self._delayed = None
        self._consumer.write(block)
        if self._onBlock is not None:
            self._onBlock()
        if not self._remaining:
            self._finish(None)

    def stopProducing(self) -> None:
        self._finish(ConnectionError("the connection closed mid-range"))

    def _finish(self, error: Exception | None) -> None:
        if self.finished.called:
            return
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        self._consumer.unregisterProducer()
        os.close(self._fd)
        if error is None:
            self.finished.callback(None)
        else:
            self.finished.errback(error)


@dataclass(frozen=True)
class ChunkRequest:
    request_id: int
    entry: IndexEntry
    index: int


class ChunkServerProtocol(MessageProtocol, TimeoutMixin):
    """Answer one client's or peer's manifest and chunk requests, in order.

    A connection that neither sends a request nor takes a block of a chunk
    for C{factory.idleTimeout} seconds is closed: a client that stopped
    reading must not hold a file descriptor and a slot forever.
    """

    maxFrameLength = 16 * 1024
    factory: ChunkServerFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        self.callLater = self.factory.clock.callLater
        self.setTimeout(self.factory.idleTimeout)
        self.peerName: str | None = None
        self.servingFiles: set[str] = set()
        self._queue: deque[dict[str, Any] | ChunkRequest] = deque()
        self.producing = False

    def sendMessage(self, message: dict[str, Any]) -> None:
        if self.producing or self._queue:
            self._queue.append(message)
        else:
            super().sendMessage(message)

    def _enqueue(self, item: ChunkRequest | dict[str, Any]) -> None:
        if len(self._queue) >= MAX_QUEUED_REQUESTS:
            raise ProtocolError(
                "busy", f"at most {MAX_QUEUED_REQUESTS} queued requests"
            )
        self._queue.append(item)
        self._pump()

    def _pump(self) -> None:
        while self._queue and not self.producing:
            item = self._queue.popleft()
            if isinstance(item, ChunkRequest):
                self._startChunk(item)
            else:
                super().sendMessage(item)

    def _requireHello(self) -> None:
        if self.peerName is None:
            raise ProtocolError("hello_first", "say hello first")

    def msg_hello(self, message: dict[str, Any]) -> None:
        if message.get("version") != PROTOCOL_VERSION:
            raise ProtocolError(
                "version", f"this secondary speaks version {PROTOCOL_VERSION}"
            )
        self.peerName = text(message, "name", max_length=256)
        self._enqueue(
            {
                "type": "welcome",
                "id": message.get("id"),
                "version": PROTOCOL_VERSION,
                "name": self.factory.name,
            }
        )

    def _lookup(self, message: dict[str, Any]) -> IndexEntry:
        """The indexed file a request names, if this peer may have it."""
        self._requireHello()
        sha256 = digest(message, "sha256")
        tickets = self.factory.tickets
        if tickets is not None:
            assert self.peerName is not None
            tickets.check(
                message.get("ticket"),
                sha256,
                self.peerName,
                self.factory.clock.seconds(),
            )
        return self.factory.index.lookup(validate_name(text(message, "name")), sha256)

    def msg_manifest(self, message: dict[str, Any]) -> None:
        entry = self._lookup(message)
        self._enqueue(
            {
                "type": "manifest",
                "id": count(message, "id"),
                "manifest": entry.manifest.to_wire(),
            }
        )

    def msg_get(self, message: dict[str, Any]) -> None:
        request_id = count(message, "id")
        entry = self._lookup(message)
        index = count(message, "index")
        if index >= len(entry.manifest.chunk_hashes):
            raise ProtocolError("bad_request", f"chunk {index} is past the end")
        self.servingFiles.add(entry.manifest.name)
        self._enqueue(ChunkRequest(request_id, entry, index))

    def _startChunk(self, request: ChunkRequest) -> None:
        offset, length = request.entry.manifest.chunk_range(request.index)
        try:
            fd = os.open(request.entry.path, os.O_RDONLY)
        except OSError as e:
            self.log.warn(
                "cannot open {path}: {error}", path=request.entry.path, error=e
            )
            self.factory.stats.error("file_unreadable")
            super().sendMessage(
                ProtocolError("not_found", "the file is gone").to_message(
                    request.request_id
                )
            )
            return
        super().sendMessage(
            {
                "type": "chunk",
                "id": request.request_id,
                "index": request.index,
                "length": length,
            }
        )
        self.producing = True
        RangeProducer(
            fd,
            offset,
            length,
            self.transport,
            self.factory.limiter,
            self.factory.clock,
            self.resetTimeout,
        ).start().addCallbacks(
            self._chunkSent,
            self._chunkFailed,
            callbackArgs=(request, length),
            errbackArgs=(request,),
        )

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)

    def timeoutConnection(self) -> None:
        self.closeSilent(self.factory.idleTimeout)

    def connectionLost(self, reason: Any) -> None:
        self.setTimeout(None)
        super().connectionLost(reason)

    def _chunkSent(self, _: None, request: ChunkRequest, length: int) -> None:
        self.producing = False
        self.factory.stats.chunkServed(
            request.entry.manifest.name, self.peerName or "?", length
        )
        self._pump()

    def _chunkFailed(self, reason: Any, request: ChunkRequest) -> None:
        if reason.check(ConnectionError):
            self.log.info(
                "{peer} hung up during chunk {index} of {name}",
                peer=self.peerName,
                index=request.index,
                name=request.entry.manifest.name,
            )
            return
        self.log.warn(
            "aborting chunk {index} of {name} to {peer}: {error}",
            index=request.index,
            name=request.entry.manifest.name,
            peer=self.peerName,
            error=reason.getErrorMessage(),
        )
        self.factory.stats.error("range_aborted")
        self.transport.abortConnection()


class ChunkServerFactory(TrackingFactory):
    """Serve the files of one L{DataIndex} under this secondary's name."""

    protocol = ChunkServerProtocol

    def __init__(
        self,
        index: DataIndex,
        name: str,
        stats: SecondaryStats,
        limiter: TokenBucket | None = None,
        clock: Any = None,
        idleTimeout: float = 60.0,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        tickets: Tickets | None = None,
    ) -> None:
        super().__init__(limits)
        self.idleTimeout = idleTimeout
        #: With tickets, only clients the central gave one are served.
        self.tickets = tickets
        self.index = index
        self.name = name
        self.stats = stats
        self.limiter = limiter
        self.clock = clock

    def activeTransfers(self) -> int:
        """Connections in the middle of sending a chunk."""
        return sum(1 for connection in self.connections if connection.producing)

    def beingServed(self) -> dict[str, int]:
        """Files clients are fetching right now, with how many connections each."""
        counts: dict[str, int] = {}
        for connection in self.connections:
            for name in connection.servingFiles:
                counts[name] = counts.get(name, 0) + 1
        return counts
