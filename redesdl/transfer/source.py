"""One connection to one source: its manifest and pipelined chunk requests.

A chunk arrives as a ``chunk`` header and exactly ``length`` raw bytes. Each
request is a L{redesdl.transfer.request} machine: a header is accepted only for
a request awaiting one, so a source cannot make us write bytes nobody asked
for; a header that breaks that rule drops the source, which the download then
bans. Accepted bytes go to the connection's L{SinkWorker} thread (small pieces
gathered first), which hands them to the store's writer for that request
(bounded to the chunk, hashed as written), so little is held in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from redesdl.machines.chunk_request import ChunkRequest, new_request
from redesdl.manifest import FileInfo, Manifest
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import (
    DOWNLOADER_FROM_SERVER,
    ChunkHeader,
    ClientHello,
    Get,
    ManifestReply,
    ManifestRequest,
    Message,
    Ticket,
)
from redesdl.shells.messages import MessageProtocol
from redesdl.transfer.errors import (
    LocalWriteError,
    ManifestMismatchError,
    OutsideChunkError,
    SourceViolationError,
)
from redesdl.transfer.store import ChunkWriter, MemoryCopy
from redesdl.transfer.writer import HIGH_WATER, SinkWorker

#: Bytes asked of each recv() on a source connection.
RECEIVE_BUFFER = 1024 * 1024
#: The same under TLS, where each read is also copied into OpenSSL's memory
#: BIO, whose buffer grows to the largest read and stays with the connection:
#: 1 MiB reads kept a TLS client's peak RSS at 65-66 MiB, 512 KiB at 61-62
#: (256 KiB: 59-60, but 0.11 CPU-s/GiB more; 512 KiB cost 0.03).
TLS_RECEIVE_BUFFER = 512 * 1024

#: Bytes that count as progress, unless a reply ends first: a source must
#: send this much per progress timeout (10 s: 1.6 KB/s, below any real link).
MIN_PROGRESS = 16 * 1024

#: Accepts a target whose bytes all arrived: True if its chunk verified now,
#: False if it was too late; raises if the chunk is corrupt.
Accept = Callable[[ChunkWriter | MemoryCopy], bool]


class SourceConnection(MessageProtocol, TimeoutMixin):
    """The client end of a conversation with one secondary."""

    #: A manifest of L{MAX_CHUNKS} chunk hashes is the largest frame.
    maxFrameLength = 384 * 1024
    vocabulary = DOWNLOADER_FROM_SERVER

    def __init__(
        self,
        clientName: str,
        reactor: Any,
        progressTimeout: float = 10.0,
        sourceName: str = "",
        ticket: Callable[[], Ticket | None] = lambda: None,
        queuedBytes: int = HIGH_WATER,
    ) -> None:
        self._client_name = clientName
        self._queued_bytes = queuedBytes
        self._ticket = ticket
        self.source_name = sourceName
        self._reactor = reactor
        self.callLater = reactor.callLater
        self._progress_timeout = progressTimeout
        self._requests: dict[int, tuple[ChunkRequest, ChunkWriter | MemoryCopy]] = {}
        self._accept: dict[int, Accept] = {}
        self._receiving: int | None = None
        #: Bytes received since the source last proved it makes progress.
        self._unproven = 0
        self.lost = False
        #: True if we hung up because the source stopped making progress.
        self.timed_out = False
        #: Why we dropped the source for breaking the protocol, if we did.
        self.violation: str | None = None
        self.welcomed: Deferred[Any] = Deferred()
        self.writes_done: Deferred[None] = Deferred()

    @property
    def sourceName(self) -> str:
        """The source's name, as trace lines and logs look it up."""
        return self.source_name

    def connectionMade(self) -> None:
        super().connectionMade()
        self._worker = SinkWorker(
            self._reactor,
            self.transport,
            self._client_name,
            high_water=self._queued_bytes,
        )
        # Read up to 1 MiB per recv (Twisted's default is 64 KiB): fewer
        # system calls and Python round trips per byte, and more pieces large
        # enough to reach the writer thread uncopied. (256 KiB reads held
        # ~5 MiB less at peak but cost ~0.15 CPU-s/GiB more.)
        self.transport.bufferSize = RECEIVE_BUFFER
        # Under TLS the socket is the wrapper's own transport.
        wrapped = getattr(self.transport, "transport", None)
        if wrapped is not None:
            wrapped.bufferSize = TLS_RECEIVE_BUFFER
        self._worker.stopped.chainDeferred(self.writes_done)
        hello = ClientHello(self.allocateId(), self._client_name)
        self._send_request(hello).chainDeferred(self.welcomed)

    # The verbs a request machine may use.

    def send(self, message: Message) -> None:
        self.setTimeout(self._progress_timeout)
        self.sendMessage(message)

    def drop(self, why: str) -> None:
        if self.violation is None:
            self.violation = why
        if not self.lost:
            self.protocolViolation(ProtocolError("bad_request", why))

    def protocolViolation(self, error: ProtocolError) -> None:
        """Whatever broke the rules, the download bans this source for it."""
        if self.violation is None:
            self.violation = f"{error.code}: {error.message}"
        super().protocolViolation(error)

    def abort(self) -> None:
        """Hang up at once, without waiting for our writes to drain."""
        self.transport.abortConnection()

    def close(self) -> None:
        self.transport.loseConnection()

    def _send_request(self, message: Message) -> Deferred[Any]:
        if self.lost:
            return fail(ConnectionLost("the source is disconnected"))
        waiting: Deferred[Any] = Deferred()
        self._pending[message.id] = waiting  # type: ignore[attr-defined]
        self.send(message)
        return waiting.addBoth(self._maybe_idle)

    def _maybe_idle(self, result: Any) -> Any:
        if not self._pending and not self.lost:
            self.setTimeout(None)
        return result

    def fetch_manifest(self, info: FileInfo) -> Deferred[Manifest]:
        """Get the manifest of C{info}; fail unless it matches C{info}."""

        def check(reply: Message) -> Manifest:
            if not isinstance(reply, ManifestReply):
                raise ProtocolError("bad_request", f"{reply.TYPE!r} is no manifest")
            if not reply.manifest.matches(info):
                raise ManifestMismatchError(f"manifest of {info.name} does not match")
            return reply.manifest

        message = ManifestRequest(
            self.allocateId(), info.name, info.sha256, self._ticket()
        )
        return self._send_request(message).addCallback(check)

    def fetch_chunk(
        self,
        manifest: Manifest,
        target: ChunkWriter | MemoryCopy,
        accept: Accept,
    ) -> Deferred[bool]:
        """Fetch chunk C{target.index} into C{target}; fire with C{accept}'s
        verdict once every byte went through C{target}."""
        if self.lost:
            return fail(ConnectionLost("the source is disconnected"))
        request_id = self.allocateId()
        get = Get(
            request_id,
            manifest.name,
            manifest.sha256,
            target.index,
            self._ticket(),
        )
        request = new_request(self, get)
        self._requests[request_id] = (request, target)
        self._accept[request_id] = accept
        waiting: Deferred[Any] = Deferred()
        self._pending[request_id] = waiting

        def ended(result: Any) -> Any:
            # Still listed only if it ended by a reply other than its chunk
            # (an error, or some other message) or by a hang-up.
            self._accept.pop(request_id, None)
            if self._requests.pop(request_id, None) is None:
                return result
            if self.lost:
                request.lost()
            elif isinstance(result, Failure):
                request.refused()
            else:
                request.odd_reply()
                return Failure(SourceViolationError(self.violation or "odd reply"))
            return result

        waiting.addBoth(ended)
        waiting.addBoth(self._maybe_idle)
        request.send()
        return waiting

    def dataReceived(self, data: bytes) -> None:
        # Progress is a reply completed, or MIN_PROGRESS bytes: a source that
        # dribbles a byte a second would otherwise never time out.
        self._unproven += len(data)
        if self._unproven >= MIN_PROGRESS:
            self._progressed()
        super().dataReceived(data)

    def messageReceived(self, message: Message) -> None:
        request_id = getattr(message, "id", None)
        if request_id in self._pending or request_id in self._requests:
            # A reply to one of our requests; an unasked frame proves nothing.
            self._progressed()
        super().messageReceived(message)

    def _progressed(self) -> None:
        self._unproven = 0
        self.resetTimeout()

    def msg_chunk(self, header: ChunkHeader) -> None:
        entry = self._requests.get(header.id)
        if entry is None:
            self.drop("a chunk header for no request of ours")
            return
        request, target = entry
        if self._receiving is not None:
            self.drop("a chunk header while another chunk is received")
            return
        if (header.index, header.length) != (target.index, target.length):
            request.mismatched()
            return
        if request.header():
            # The decoder hands us exactly header.length raw bytes next.
            self._receiving = header.id

    def rawDataReceived(self, data: memoryview) -> None:
        assert self._receiving is not None
        self._worker.submit(self._requests[self._receiving][1], data)

    def rawDataFinished(self) -> None:
        assert self._receiving is not None
        self._progressed()
        request_id, self._receiving = self._receiving, None
        self._requests[request_id][0].body_done()
        self._worker.after(lambda: self._chunk_written(request_id))

    def _chunk_written(self, request_id: int) -> None:
        if self.violation is not None or request_id not in self._requests:
            # Dropped meanwhile: the hang-up fails this request.
            return
        request, target = self._requests.pop(request_id)
        accept = self._accept.pop(request_id)
        waiting = self.takePending(request_id)
        assert waiting is not None
        error = target.error
        if isinstance(error, OutsideChunkError):
            request.failed()
            self.drop(f"chunk {target.index}: {error}")
            waiting.errback(SourceViolationError(str(error)))
            return
        if error is not None:
            request.failed()
            waiting.errback(
                LocalWriteError(error) if isinstance(error, OSError) else error
            )
            return
        try:
            accepted = accept(target)
        except Exception as e:
            request.failed()
            waiting.errback(e)
            return
        request.verified()
        waiting.callback(accepted)

    def timeoutConnection(self) -> None:
        self.timed_out = True
        self.log.warn(
            "no progress from {peer} in {seconds}s; dropping it",
            peer=self.transport.getPeer(),
            seconds=self._progress_timeout,
        )
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        self.lost = True
        self.setTimeout(None)
        if self.violation is not None:
            reason = Failure(SourceViolationError(self.violation))
        # Fail the waiting requests only once every byte already received is
        # on disk: a chunk must not go to another source while stale bytes
        # from this one may still land on top of it.
        self._worker.stop().addCallback(
            lambda _: MessageProtocol.connectionLost(self, reason)
        )
