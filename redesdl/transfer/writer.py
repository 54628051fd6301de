"""Write and hash received chunk bytes off the reactor thread.

``os.pwrite`` and SHA-256 release the GIL, so doing them in one thread per
source connection lets three streams use both cores while the reactor keeps
reading sockets. The bytes still go through the store's writer, which checks
that they belong to the chunk requested. Each connection's pieces are handled
in arrival order (a chunk's hash must see its bytes in order).

Pieces smaller than a gather buffer (L{redesdl.transfer.buffers}) are copied
into one and handed over when it is full or the chunk ends, so a TLS stream's
16 KiB records cost one thread hand-off per 256 KiB, not one each; a piece at
least that large goes over as it is, uncopied. When more than its high water
(L{HIGH_WATER} unless told otherwise) waits, the connection stops reading
until the thread catches up, so memory stays bounded whatever the disk speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer

from redesdl.transfer.buffers import BufferPool

HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024


class Sink(Protocol):
    """Where a chunk's bytes go: a L{redesdl.transfer.store.ChunkWriter}."""

    index: int
    error: Exception | None

    def write(self, index: int, data: memoryview) -> None:
        """Take C{data}; keep no reference to it (its buffer is reused)."""


class SinkWorker:
    """One thread applying C{sink.write(piece)} in order for one connection."""

    def __init__(
        self,
        reactor: Any,
        transport: IPushProducer,
        name: str,
        pool: BufferPool | None = None,
        high_water: int = HIGH_WATER,
    ) -> None:
        self._reactor = reactor
        #: Bytes queued for the thread past which the connection stops reading.
        self._high_water = high_water
        self._transport = transport
        self._queue: SimpleQueue[tuple[Any, Any, bytearray | None]] = SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0
        self._paused = False
        self.pool = pool or BufferPool()
        #: The buffer being filled, for L{_sink}, and how much of it is.
        self._gather: bytearray | None = None
        self._gathered = 0
        self._sink: Sink | None = None
        #: Pieces handed to the thread so far (what a test counts).
        self.handoffs = 0
        self.stopped: Deferred[None] = Deferred()
        self._thread = threading.Thread(
            target=self._run, name=f"redesdl-{name}", daemon=True
        )
        self._thread.start()

    def submit(self, sink: Sink, piece: memoryview) -> None:
        """Queue C{piece} for C{sink}, gathering small pieces first."""
        if sink is not self._sink:
            self._flush()
            self._sink = sink
        size = self.pool.size
        if len(piece) >= size:
            # Large enough to go as it is: what was gathered goes first.
            self._flush()
            self._hand_off(sink, piece, None)
            return
        while piece:
            if self._gather is None:
                self._gather = self.pool.take()
            taken = min(len(piece), size - self._gathered)
            self._gather[self._gathered : self._gathered + taken] = piece[:taken]
            self._gathered += taken
            piece = piece[taken:]
            if self._gathered == size:
                self._flush()

    def after(self, call: Callable[[], None]) -> None:
        """Run C{call} in the reactor once every piece queued so far is written."""
        self._flush()
        self._sink = None
        self._queue.put((None, call, None))

    def stop(self) -> Deferred[None]:
        """Finish what is queued, end the thread; fire L{stopped} when it has."""
        self._flush()
        self._sink = None
        self._queue.put((None, None, None))
        return self.stopped

    def _flush(self) -> None:
        """Hand the gathered bytes, if any, to the thread."""
        buffer, self._gather = self._gather, None
        if buffer is None:
            return
        assert self._sink is not None
        gathered, self._gathered = self._gathered, 0
        self._hand_off(self._sink, memoryview(buffer)[:gathered], buffer)

    def _hand_off(
        self, sink: Sink, piece: memoryview, buffer: bytearray | None
    ) -> None:
        """Queue C{piece}; pause reading if too much waits."""
        self.handoffs += 1
        with self._lock:
            self._queued += len(piece)
            pause = not self._paused and self._queued > self._high_water
            self._paused = self._paused or pause
        if pause:
            self._transport.pauseProducing()
        self._queue.put((sink, piece, buffer))

    def _run(self) -> None:
        while True:
            sink, piece, buffer = self._queue.get()
            if sink is None:
                if piece is None:
                    self._reactor.callFromThread(self.stopped.callback, None)
                    return
                self._reactor.callFromThread(piece)
                continue
            size = len(piece)
            if sink.error is None:
                try:
                    sink.write(sink.index, piece)
                except Exception as e:
                    # Refused by the store, or the disk failed: the reactor
                    # reads it once the chunk's last byte went through here.
                    sink.error = e
            if buffer is not None:
                self.pool.give(buffer)
            with self._lock:
                self._queued -= size
                resume = self._paused and self._queued < LOW_WATER
                self._paused = self._paused and not resume
            if resume:
                self._reactor.callFromThread(self._resume)

    def _resume(self) -> None:
        if not self._paused:
            self._transport.resumeProducing()
