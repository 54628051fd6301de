"""One connection to one source: its manifest and pipelined chunk requests.

A chunk arrives as a ``chunk`` header and exactly ``length`` raw bytes. Each
piece goes to the connection's L{SinkWorker} thread, which writes it with
``os.pwrite`` at its offset in the ``.part`` file and feeds it to a SHA-256,
so little is held in memory and the chunk is verified once its last byte
is written.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from redesdl.client.writer import SinkWorker
from redesdl.manifest import FileInfo, Manifest
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.messages import PROTOCOL_VERSION, MessageProtocol, mapping
from redesdl.protocol.wire import ChunkHeader
from redesdl.writeback import start_writeback

#: Bytes asked of each recv() on a source connection.
RECEIVE_BUFFER = 1024 * 1024


class ChunkCorruptError(Exception):
    """A chunk's bytes did not match the manifest: the source lied or rotted."""


class ManifestMismatchError(Exception):
    """A source's manifest is not the content the central vouches for."""


class LocalWriteError(Exception):
    """Writing received bytes to our own disk failed (full disk, I/O error)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.error = error


class ChunkSink:
    """Write one chunk's bytes at their offset, hashing them as they arrive."""

    def __init__(self, fd: int, offset: int, length: int, expected: str) -> None:
        self._fd = fd
        self._offset = offset
        self._position = offset
        self.length = length
        self._expected = expected
        self._hash = hashlib.sha256()
        self.error: OSError | None = None

    def write(self, data: memoryview) -> None:
        if self.error is not None:
            return
        self._hash.update(data)
        try:
            while data:
                written = os.pwrite(self._fd, data, self._position)
                self._position += written
                data = data[written:]
        except OSError as e:
            self.error = e
            return
        if self._position == self._offset + self.length:
            start_writeback(self._fd, self._offset, self.length)

    def verified(self) -> bool:
        return self._hash.hexdigest() == self._expected


class MemorySink:
    """Hold an endgame duplicate in memory, hashing it, until it wins."""

    def __init__(self, length: int, expected: str) -> None:
        self.length = length
        self._expected = expected
        self._hash = hashlib.sha256()
        self.data = bytearray()
        self.error: OSError | None = None

    def write(self, data: memoryview) -> None:
        self._hash.update(data)
        self.data += data

    def verified(self) -> bool:
        return self._hash.hexdigest() == self._expected


class SourceConnection(MessageProtocol, TimeoutMixin):
    """The client end of a conversation with one secondary."""

    #: A manifest of L{MAX_CHUNKS} chunk hashes is the largest frame.
    maxFrameLength = 384 * 1024

    def __init__(
        self,
        clientName: str,
        reactor: Any,
        progressTimeout: float = 10.0,
        sourceName: str = "",
        ticket: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        self._clientName = clientName
        self._ticket = ticket
        self.sourceName = sourceName
        self._reactor = reactor
        self.callLater = reactor.callLater
        self._progressTimeout = progressTimeout
        self._sinks: dict[int, ChunkSink | MemorySink] = {}
        self._receiving: tuple[int, ChunkSink | MemorySink] | None = None
        self.lost = False
        #: True if we hung up because the source stopped making progress.
        self.timedOut = False
        self.welcomed: Deferred[dict[str, Any]] = Deferred()
        self.writesDone: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        super().connectionMade()
        self._worker = SinkWorker(self._reactor, self.transport, self._clientName)
        # Read up to 1 MiB per recv (Twisted's default is 64 KiB): four times
        # fewer system calls and Python round trips per byte received.
        self.transport.bufferSize = RECEIVE_BUFFER
        # Under TLS the socket is the wrapper's own transport.
        wrapped = getattr(self.transport, "transport", None)
        if wrapped is not None:
            wrapped.bufferSize = RECEIVE_BUFFER
        self._worker.stopped.chainDeferred(self.writesDone)
        self._send(
            {
                "type": "hello",
                "version": PROTOCOL_VERSION,
                "role": "client",
                "name": self._clientName,
            }
        ).chainDeferred(self.welcomed)

    def _send(
        self, message: dict[str, Any], request_id: int | None = None
    ) -> Deferred[dict[str, Any]]:
        if self.lost:
            return fail(ConnectionLost("the source is disconnected"))
        ticket = self._ticket()
        if ticket is not None and message["type"] != "hello":
            message = {**message, "ticket": ticket}
        self.setTimeout(self._progressTimeout)
        waiting = self.request(message, request_id)
        waiting.addBoth(self._maybeIdle)
        return waiting

    def _maybeIdle(self, result: Any) -> Any:
        if not self._pending and not self.lost:
            self.setTimeout(None)
        return result

    def fetchManifest(self, info: FileInfo) -> Deferred[Manifest]:
        """Get the manifest of C{info}; fail unless it matches C{info}."""

        def check(reply: dict[str, Any]) -> Manifest:
            manifest = Manifest.from_wire(mapping(reply, "manifest"))
            if not manifest.matches(info):
                raise ManifestMismatchError(f"manifest of {info.name} does not match")
            return manifest

        return self._send(
            {"type": "manifest", "name": info.name, "sha256": info.sha256}
        ).addCallback(check)

    def fetchChunk(
        self,
        manifest: Manifest,
        index: int,
        fd: int,
        sink: ChunkSink | MemorySink | None = None,
    ) -> Deferred[int]:
        """Fetch chunk C{index} into C{fd} (or C{sink}); fire with its length
        once verified."""
        request_id = self.allocateId()
        offset, length = manifest.chunk_range(index)
        self._sinks[request_id] = sink or ChunkSink(
            fd, offset, length, manifest.chunk_hashes[index]
        )
        waiting = self._send(
            {
                "type": "get",
                "name": manifest.name,
                "sha256": manifest.sha256,
                "index": index,
            },
            request_id,
        )

        def forget(result: Any) -> Any:
            self._sinks.pop(request_id, None)
            return result

        return waiting.addBoth(forget)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)

    def msg_chunk(self, header: ChunkHeader) -> None:
        sink = self._sinks.get(header.id)
        if sink is None or header.length != sink.length:
            self.protocolViolation(
                ProtocolError("bad_request", "unexpected chunk or length")
            )
            return
        self._receiving = (header.id, sink)

    def rawDataReceived(self, data: memoryview) -> None:
        assert self._receiving is not None
        self._worker.submit(self._receiving[1], data)

    def rawDataFinished(self) -> None:
        assert self._receiving is not None
        request_id, sink = self._receiving
        self._receiving = None
        self._worker.after(lambda: self._chunkWritten(request_id, sink))

    def _chunkWritten(self, request_id: int, sink: ChunkSink | MemorySink) -> None:
        waiting = self.takePending(request_id)
        if waiting is None:
            return
        if sink.error is not None:
            waiting.errback(LocalWriteError(sink.error))
        elif not sink.verified():
            waiting.errback(ChunkCorruptError("chunk hash mismatch"))
        else:
            waiting.callback(sink.length)

    def timeoutConnection(self) -> None:
        self.timedOut = True
        self.log.warn(
            "no progress from {peer} in {seconds}s; dropping it",
            peer=self.transport.getPeer(),
            seconds=self._progressTimeout,
        )
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        self.lost = True
        self.setTimeout(None)
        # Fail the waiting requests only once every byte already received is
        # on disk: a chunk must not go to another source while stale bytes
        # from this one may still land on top of it.
        self._worker.stop().addCallback(
            lambda _: MessageProtocol.connectionLost(self, reason)
        )
