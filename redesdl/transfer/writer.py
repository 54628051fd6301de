"""Write and hash received chunk bytes off the reactor thread.

``os.pwrite`` and SHA-256 release the GIL, so doing them in one thread per
source connection lets three streams use both cores while the reactor keeps
reading sockets. The bytes still go through the store's writer, which checks
that they belong to the chunk requested. Each connection's pieces are handled
in arrival order (a chunk's hash must see its bytes in order). When more than
L{HIGH_WATER} bytes wait, the connection stops reading until the thread catches
up, so memory stays bounded whatever the disk speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer

HIGH_WATER = 8 * 1024 * 1024
LOW_WATER = 2 * 1024 * 1024


class Sink(Protocol):
    """Where a chunk's bytes go: a L{redesdl.transfer.store.ChunkWriter}."""

    index: int
    error: Exception | None

    def write(self, index: int, data: memoryview) -> None: ...


class SinkWorker:
    """One thread applying C{sink.write(piece)} in order for one connection."""

    def __init__(self, reactor: Any, transport: IPushProducer, name: str) -> None:
        self._reactor = reactor
        self._transport = transport
        self._queue: SimpleQueue[tuple[Any, Any]] = SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0
        self._paused = False
        self.stopped: Deferred[None] = Deferred()
        self._thread = threading.Thread(
            target=self._run, name=f"redesdl-{name}", daemon=True
        )
        self._thread.start()

    def submit(self, sink: Sink, piece: memoryview) -> None:
        """Queue C{piece} for C{sink}; pause reading if too much waits."""
        with self._lock:
            self._queued += len(piece)
            pause = not self._paused and self._queued > HIGH_WATER
            self._paused = self._paused or pause
        if pause:
            self._transport.pauseProducing()
        self._queue.put((sink, piece))

    def after(self, call: Callable[[], None]) -> None:
        """Run C{call} in the reactor once every piece queued so far is written."""
        self._queue.put((None, call))

    def stop(self) -> Deferred[None]:
        """Finish what is queued, end the thread; fire L{stopped} when it has."""
        self._queue.put((None, None))
        return self.stopped

    def _run(self) -> None:
        while True:
            sink, piece = self._queue.get()
            if sink is None:
                if piece is None:
                    self._reactor.callFromThread(self.stopped.callback, None)
                    return
                self._reactor.callFromThread(piece)
                continue
            if sink.error is None:
                try:
                    sink.write(sink.index, piece)
                except Exception as e:
                    # Refused by the store, or the disk failed: the reactor
                    # reads it once the chunk's last byte went through here.
                    sink.error = e
            with self._lock:
                self._queued -= len(piece)
                resume = self._paused and self._queued < LOW_WATER
                self._paused = self._paused and not resume
            if resume:
                self._reactor.callFromThread(self._resume)

    def _resume(self) -> None:
        if not self._paused:
            self._transport.resumeProducing()
