"""The secondary's server side: manifests and byte ranges for clients and peers.

The conversation itself (hello first, replies strictly in request order, what
a connection may owe, when to stop reading a peer that does not read) is the
machine in L{redesdl.machines.chunk_session}. This module is its Twisted
shell: L{ChunkServerProtocol} decodes, calls the machine's inputs and
implements its verbs. Over plain TCP without a rate limit, a chunk's bytes
go from the file to the socket by ``os.sendfile``
(L{redesdl.secondary.sendfile.SendfileRange}); over TLS, or paced by the
C{--rate-limit} bucket, L{RangeWriter} reads and writes one block at a time,
each time the transport has room (L{_DrainWatcher} over TCP, L{_RoomWatcher}
over TLS).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import (
    IDelayedCall,
    IPullProducer,
    IPushProducer,
    IReactorTime,
)
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from redesdl.machines.chunk_session import MACHINE, Chunk, SessionCore
from redesdl.protocol import wire
from redesdl.protocol.complaints import COMPLAINTS, peer_host
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.tickets import Tickets
from redesdl.secondary.index import DataIndex, IndexEntry
from redesdl.secondary.ratelimit import TokenBucket
from redesdl.secondary.sendbuffer import ask_send_buffer
from redesdl.secondary.sendfile import SendfileRange, can_sendfile, socket_sendfile
from redesdl.secondary.stats import SecondaryStats
from redesdl.secondary.unsent import unsent_counter
from redesdl.shells.messages import (
    MAX_REFUSALS,
    ROUTINE_REFUSALS,
    MessageProtocol,
)
from redesdl.shells.tracking import (
    DEFAULT_LIMITS,
    ConnectionLimits,
    TrackingFactory,
)

#: Largest block of a chunk written at once.
BLOCK_SIZE = 256 * 1024


class RangeWriter:
    """Write C{length} bytes of an open file from C{offset}, a block per call.

    With a L{TokenBucket}, a block the bucket cannot pay for yet is written
    by a timer once it can; meanwhile L{write_block} does nothing, so the
    connection idles instead of buffering.
    """

    def __init__(
        self,
        fd: int,
        offset: int,
        length: int,
        consumer: Any,
        limiter: TokenBucket | None = None,
        clock: Any = None,
        on_block: Any = None,
    ) -> None:
        self._fd: int | None = fd
        self._offset = offset
        self._remaining = length
        self._consumer = consumer
        self._limiter = limiter
        self._clock = clock
        self._on_block = on_block
        self._delayed: IDelayedCall | None = None
        self._held = 0

    @property
    def done(self) -> bool:
        return not self._remaining and self._delayed is None

    @property
    def held(self) -> int:
        """Bytes read and waiting for the rate limit."""
        return self._held

    def write_block(self) -> bool:
        if self._delayed is not None or not self._remaining or self._fd is None:
            return True
        size = min(BLOCK_SIZE, self._remaining)
        if self._limiter is not None:
            size = min(size, self._limiter.blockSize)
        try:
            block = os.pread(self._fd, size, self._offset)
        except OSError:
            return False
        if len(block) != size:
            return False
        self._offset += size
        self._remaining -= size
        wait = self._limiter.take(size) if self._limiter is not None else 0.0
        if wait > 0:
            self._held = size
            self._delayed = self._clock.callLater(wait, self._write, block)
        else:
            self._write(block)
        return True

    def _write(self, block: bytes) -> None:
        self._delayed = None
        self._held = 0
        self._consumer.write(block)
        if self._on_block is not None:
            self._on_block()

    def close(self) -> None:
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        self._held = 0
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@implementer(IPullProducer)
class _DrainWatcher:
    """Over plain TCP: Twisted asks a pull producer each time its buffer empties."""

    def __init__(self, protocol: ChunkServerProtocol) -> None:
        self._protocol = protocol

    def start(self) -> None:
        self._protocol.transport.registerProducer(self, False)

    def stop(self) -> None:
        self._protocol.transport.unregisterProducer()

    def forget(self) -> None:
        """The connection is gone: Twisted has dropped the producer itself."""

    def resumeProducing(self) -> None:
        self._protocol.transportDrained()

    def stopProducing(self) -> None:
        """The connection is closing; connectionLost tells the session."""


@implementer(IPushProducer)
class _RoomWatcher:
    """Over TLS: tell the session when the transport has room, never in a loop.

    Twisted's TLS turns a pull producer into a loop that asks for data until
    a write fills the TCP buffer. Registered (as each chunk began) while that
    buffer already held a block, it asked thousands of times a second and
    found no room each time: a busy server. This streaming producer is
    registered when the connection is made, before anything is written, so
    Twisted's pause is always true to the buffer: paused by the write that
    fills it, resumed once everything was sent. While the session wants room
    and the producer is not paused, the session is told once per turn.
    """

    def __init__(self, tell: Callable[[], None], clock: IReactorTime) -> None:
        self._tell = tell
        self._clock = clock
        self._wanted = False
        self._call: IDelayedCall | None = None
        self.paused = False

    def start(self) -> None:
        self._wanted = True
        self._soon()

    def stop(self) -> None:
        self._wanted = False
        if self._call is not None:
            self._call.cancel()
            self._call = None

    forget = stop

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._soon()

    def stopProducing(self) -> None:
        self.stop()

    def _soon(self) -> None:
        if self._wanted and not self.paused and self._call is None:
            self._call = self._clock.callLater(0, self._ask)

    def _ask(self) -> None:
        self._call = None
        if self._wanted and not self.paused:
            self._tell()
            # A small reply leaves room, and Twisted resumes only a producer
            # it paused: ask again next turn.
            self._soon()


class ChunkServerProtocol(MessageProtocol, TimeoutMixin):
    """Answer one client's or peer's manifest and chunk requests, in order.

    A connection that neither sends a request nor takes what was written
    for C{factory.idleTimeout} seconds is closed: a client that stopped
    reading must not hold a file descriptor and a slot forever.
    """

    vocabulary = wire.CHUNK_SERVER_INBOUND
    maxFrameLength = 16 * 1024
    factory: ChunkServerFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        self.callLater = self.factory.clock.callLater
        self._unsent = unsent_counter(self.transport)
        if self.factory.sendBuffer is not None and can_sendfile(self.transport):
            self._askSendBuffer(self.factory.sendBuffer)
        self.setTimeout(self.factory.idleTimeout)
        self.peerName: str | None = None
        self.servingFiles: set[str] = set()
        self._watching = False
        self._parked = False
        self._drain: _DrainWatcher | _RoomWatcher
        if isinstance(self.transport, TLSMemoryBIOProtocol):
            self._drain = _RoomWatcher(self.transportDrained, self.factory.clock)
            self.transport.registerProducer(self._drain, True)
        else:
            self._drain = _DrainWatcher(self)
        self._core = SessionCore(self, MAX_REFUSALS, frozenset(ROUTINE_REFUSALS))
        self.session = MACHINE(self._core)

    def _askSendBuffer(self, request: int) -> None:
        try:
            ask_send_buffer(self.transport, request)
        except OSError as e:
            self.log.warn("cannot size the send buffer: {error}", error=e)

    @property
    def producing(self) -> bool:
        """True while a chunk is being sent."""
        return self._core.chunk_started()

    def heldBytes(self) -> int:
        """Bytes this connection holds for its peer: unsent and rate-limited."""
        return self._unsent() + self._paced_bytes()

    # -- Decoded messages and connection events become inputs ------------

    def msg_hello(self, message: wire.ClientHello) -> None:
        self.session.hello(message)

    def msg_manifest(self, message: wire.ManifestRequest) -> None:
        self.session.manifest(message)

    def msg_get(self, message: wire.Get) -> None:
        self.session.get(message)

    def msg_ping(self, message: wire.Ping) -> None:
        self.session.ping(message)

    def refuse(self, kind: str, error: ProtocolError, request_id: int | None) -> None:
        self.session.malformed(kind, error, request_id)

    def protocolViolation(self, error: ProtocolError) -> None:
        self._broken = True
        self.session.broken(error)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)

    def transportDrained(self) -> None:
        if self._paced_bytes():
            # Over TLS the session is asked once a turn while the transport
            # has room: while the rate limit holds a block, stop being asked.
            self._parked = True
            self._drain.stop()
            return
        if self._unsent() == 0:
            self.resetTimeout()
        self.session.drained()

    def _paced_bytes(self) -> int:
        """Bytes read and held back by the rate limit."""
        if self.factory.limiter is None:
            return 0
        return sum(
            item.writer.held  # type: ignore[attr-defined]
            for item in self._core.owed
            if isinstance(item, Chunk) and item.writer is not None
        )

    def _blockWritten(self) -> None:
        """A block went out (perhaps late, paced by the rate limit)."""
        self.resetTimeout()
        if self._parked and self._watching:
            self._parked = False
            self._drain.start()

    def _sentByKernel(self, count: int) -> None:
        self.factory.sent_by_kernel += count
        self.resetTimeout()

    def _socketFailed(self, error: OSError) -> None:
        """Sending failed: the peer is gone, and Twisted has yet to notice."""
        self.transport.abortConnection()

    def timeoutConnection(self) -> None:
        self.session.timed_out()

    def connectionLost(self, reason: Any) -> None:
        self.setTimeout(None)
        self._watching = False
        self._drain.forget()
        self.session.connection_lost()
        super().connectionLost(reason)

    # -- The verbs of the session ----------------------------------------

    def welcome(self, hello: wire.ClientHello) -> None:
        self.peerName = hello.name
        self.send(wire.ServerWelcome(hello.id, self.factory.name))

    def find(self, request: wire.ManifestRequest | wire.Get) -> IndexEntry:
        tickets = self.factory.tickets
        if tickets is not None:
            assert self.peerName is not None
            tickets.check(
                request.ticket,
                request.sha256,
                self.peerName,
                self.factory.clock.seconds(),
            )
        return self.factory.index.lookup(request.name, request.sha256)

    def send(self, message: wire.Message) -> None:
        super().sendMessage(message)

    def unsent_bytes(self) -> int:
        return self._unsent()

    def open_chunk(
        self, entry: IndexEntry, offset: int, length: int
    ) -> RangeWriter | SendfileRange:
        try:
            fd = self.factory.index.open(entry)
        except OSError as e:
            self.log.warn("cannot open {path}: {error}", path=entry.path, error=e)
            self.factory.stats.error("file_unreadable")
            raise ProtocolError("not_found", "the file is gone") from None
        self.servingFiles.add(entry.manifest.name)
        if self.factory.limiter is None and can_sendfile(self.transport):
            return SendfileRange(
                fd,
                offset,
                length,
                sendfile=socket_sendfile(self.transport),
                pending_bytes=self._unsent,
                wait_writable=self.transport.startWriting,
                on_sent=self._sentByKernel,
                on_peer_gone=self._socketFailed,
            )
        return RangeWriter(
            fd,
            offset,
            length,
            self.transport,
            self.factory.limiter,
            self.factory.clock,
            self._blockWritten,
        )

    def served(self, entry: IndexEntry, length: int) -> None:
        self.factory.stats.chunkServed(
            entry.manifest.name, self.peerName or "?", length
        )

    def complain(self, kind: str, error: ProtocolError) -> None:
        self.complain_of_refusal(kind, error)

    def watch_drain(self) -> None:
        if not self._watching:
            self._watching = True
            self._drain.start()

    def unwatch_drain(self) -> None:
        if self._watching:
            self._watching = False
            if not self._parked:
                self._drain.stop()
        self._parked = False

    def release_transport(self) -> None:
        """Let the transport close: TLS closes only once no producer is left."""
        self.unwatch_drain()
        if isinstance(self._drain, _RoomWatcher):
            self.transport.unregisterProducer()

    def stop_reading(self) -> None:
        self.transport.pauseProducing()

    def start_reading(self) -> None:
        self.transport.resumeProducing()

    def hang_up(self, error: ProtocolError, abort: bool) -> None:
        self.release_transport()
        if error.code == "internal":
            # Our fault (a file shorter than its manifest), not the peer's.
            self.log.warn(
                "aborting a chunk to {peer}: {reason}",
                peer=self.peerName,
                reason=error.message,
            )
            self.factory.stats.error("range_aborted")
        else:
            COMPLAINTS.complain(
                peer_host(self.transport),
                "closing connection to {peer}: {code}: {reason}",
                code=error.code,
                reason=error.message,
            )
        if abort:
            self.transport.abortConnection()
        else:
            self.send(wire.Error(error.code, error.message))
            self.transport.loseConnection()

    def close_silent(self) -> None:
        self.release_transport()
        self.closeSilent(self.factory.idleTimeout)


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
        sendBuffer: int | None = None,
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
        #: The C{SO_SNDBUF} asked for plain-TCP connections (None: the kernel's).
        self.sendBuffer = sendBuffer
        #: Chunk bytes sent by C{os.sendfile} rather than through the transport.
        self.sent_by_kernel = 0

    def disconnectAll(self) -> None:
        for connection in list(self.connections):
            connection.release_transport()
        super().disconnectAll()

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
