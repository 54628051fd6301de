"""In-memory sources for the download loop, driven by a fake clock.

Each L{FakeSource} plays one secondary as the loop sees it (a
L{redesdl.transfer.fetcher.Fetcher}): it answers after a delay on a
L{twisted.internet.task.Clock}, and its bytes go through the store's writer
exactly as a real connection's would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock

from redesdl.manifest import FileInfo, Manifest
from redesdl.protocol.sources import SourceAddress
from redesdl.transfer.errors import SourceViolationError
from redesdl.transfer.source import Accept
from redesdl.transfer.store import ChunkWriter, MemoryCopy


@dataclass
class Behaviour:
    """How one fake source acts."""

    #: Seconds per chunk.
    delay: float = 1.0
    #: Send wrong bytes for every chunk.
    corrupt: bool = False
    #: Send a chunk nobody asked for (the engine sees a violation).
    violate: bool = False
    #: Drop the connection after this many chunks.
    dies_after: int | None = None
    #: Never answer a chunk request; time out after this many seconds.
    hangs_for: float | None = None
    #: Serve this many chunk requests first, then hang as above.
    hangs_after: int = 0
    #: Refuse connections.
    refuses: bool = False
    #: Chunks it served, in order.
    served: list[int] = field(default_factory=list)


class FakeSource:
    """One source in memory: the loop's L{Fetcher}."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        manifest: Manifest,
        data: bytes,
        behaviour: Behaviour,
    ) -> None:
        self.source_name = name
        self.lost = False
        self.timed_out = False
        self.welcomed: Deferred[Any] = succeed({"type": "welcome"})
        self.writes_done: Deferred[None] = Deferred()
        self._clock = clock
        self._manifest = manifest
        self._data = data
        self._behaviour = behaviour
        self._pending: list[tuple[Deferred[bool], Any]] = []
        self._requests = 0

    def fetch_manifest(self, info: FileInfo) -> Deferred[Manifest]:
        return succeed(self._manifest)

    def fetch_chunk(
        self, manifest: Manifest, target: ChunkWriter | MemoryCopy, accept: Accept
    ) -> Deferred[bool]:
        if self.lost:
            return fail(ConnectionLost("the source is disconnected"))
        done: Deferred[bool] = Deferred()
        behaviour = self._behaviour
        self._requests += 1
        if behaviour.hangs_for is not None and self._requests > behaviour.hangs_after:
            call = self._clock.callLater(behaviour.hangs_for, self._time_out)
        else:
            call = self._clock.callLater(
                behaviour.delay, self._deliver, target, accept, done
            )
        self._pending.append((done, call))
        return done

    def _deliver(
        self, target: ChunkWriter | MemoryCopy, accept: Accept, done: Deferred[bool]
    ) -> None:
        self._pending = [p for p in self._pending if p[0] is not done]
        behaviour = self._behaviour
        if behaviour.violate:
            self._lose(SourceViolationError("a chunk header for no request of ours"))
            done.errback(SourceViolationError("a chunk header for no request of ours"))
            return
        offset, length = self._manifest.chunk_range(target.index)
        data = self._data[offset : offset + length]
        if behaviour.corrupt:
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        behaviour.served.append(target.index)
        try:
            target.write(target.index, data)
            won = accept(target)
        except Exception as e:
            done.errback(e)
            return
        done.callback(won)
        if behaviour.dies_after is not None and len(behaviour.served) >= (
            behaviour.dies_after
        ):
            self.abort()

    def _time_out(self) -> None:
        self.timed_out = True
        self.abort()

    def _lose(self, error: Exception) -> None:
        if self.lost:
            return
        self.lost = True
        pending, self._pending = self._pending, []
        for done, call in pending:
            if call.active():
                call.cancel()
            done.errback(error)
        self.writes_done.callback(None)

    def abort(self) -> None:
        self._lose(ConnectionLost("aborted"))

    def close(self) -> None:
        self._lose(ConnectionLost("closed"))


class FakeCluster:
    """The fake sources of one test, opened by name as the loop asks."""

    def __init__(self, clock: Clock, manifest: Manifest, data: bytes) -> None:
        self.clock = clock
        self.manifest = manifest
        self.data = data
        self.behaviours: dict[str, Behaviour] = {}
        self.opened: list[str] = []

    def add(self, name: str, **behaviour: Any) -> SourceAddress:
        self.behaviours[name] = Behaviour(**behaviour)
        return SourceAddress(name, "127.0.0.1", 1)

    def open_source(self, source: SourceAddress) -> Deferred[Any]:
        self.opened.append(source.name)
        behaviour = self.behaviours[source.name]
        if behaviour.refuses:
            return fail(ConnectionRefusedError())
        return succeed(
            FakeSource(source.name, self.clock, self.manifest, self.data, behaviour)
        )
