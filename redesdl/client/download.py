"""The download engine: one file from every source at once, verified, then renamed.

Each source gets one connection and a few pipelined requests ("lanes"). A
lane takes the next missing chunk from the L{ChunkScheduler}, fetches it and
marks it done once its hash matched; if the chunk fails, the lane puts it back
for another source and drops its own source from this download. The download
succeeds while one source stays alive; the bytes land in ``PATH.part``, which
is fsynced and renamed to PATH only when every chunk verified. The client's
``get`` and the secondary's replication both use this engine.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from redesdl.client.errors import (
    DiskError,
    DownloadError,
    IntegrityError,
    NoLiveSourceError,
)
from redesdl.client.partfile import PartFile, notice
from redesdl.client.reasons import describe_error
from redesdl.client.scheduler import ChunkScheduler
from redesdl.client.source import (
    ChunkCorruptError,
    LocalWriteError,
    ManifestMismatchError,
    MemorySink,
    SourceConnection,
)
from redesdl.endpoints import connect_protocol
from redesdl.manifest import MAX_CHUNK_SIZE, FileInfo, Manifest
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.sources import SourceAddress
from redesdl.tls import plain_endpoint

#: Most chunk events kept in a download's timeline.
MAX_TIMELINE_EVENTS = 20000


@dataclass
class DownloadResult:
    """What a finished download did, as ``get --json`` reports it."""

    name: str
    path: str
    size: int
    sha256: str
    seconds: float
    bytes_fetched: int
    sources: dict[str, int]
    bytes_reused: int = 0
    queued_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "seconds": round(self.seconds, 3),
            "bytes_fetched": self.bytes_fetched,
            "bytes_reused": self.bytes_reused,
            "queued_seconds": round(self.queued_seconds, 3),
            "sources": dict(self.sources),
        }


class Download:
    """Fetch the content C{info} from C{sources} into C{destination}."""

    log = Logger()

    def __init__(
        self,
        info: FileInfo,
        sources: list[SourceAddress],
        destination: str,
        *,
        reactor: Any,
        clientName: str = "redesdl",
        overwrite: bool = False,
        partPath: str | None = None,
        pipeline: int = 2,
        connectTimeout: float = 10.0,
        progressTimeout: float = 10.0,
        findSources: Callable[[], Deferred[list[SourceAddress]]] | None = None,
        retryFor: float = 0.0,
        refreshInterval: float = 3.0,
        onBadSource: Callable[[str], None] | None = None,
        connectSource: Callable[..., IStreamClientEndpoint] = plain_endpoint,
        ticket: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        self.info = info
        self.sources = list(sources)
        self.destination = destination
        self.partPath = partPath or destination + ".part"
        self._reactor = reactor
        self._clientName = clientName
        self._pipeline = pipeline
        self._connectTimeout = connectTimeout
        self._progressTimeout = progressTimeout
        self._connectSource = connectSource
        self._ticket = ticket
        self._manifest: Manifest | None = None
        self._scheduler: ChunkScheduler | None = None
        self._part = PartFile(destination, self.partPath, overwrite)
        self._fatal: DownloadError | None = None
        self._connections: list[SourceConnection] = []
        self.bytesBySource: Counter[str] = Counter()
        #: Why each dropped source was dropped, for the final error message.
        self.sourceErrors: dict[str, str] = {}
        #: Chunks that failed once and went back to be fetched again.
        self.retriedChunks = 0
        self._findSources = findSources
        self._onBadSource = onBadSource
        self._retryFor = retryFor
        self._refreshInterval = refreshInterval
        #: The running worker of each source, by name.
        self._workers: dict[str, Deferred[None]] = {}
        #: Sources that sent bytes or a manifest that did not verify.
        self._banned: set[str] = set()
        self._partReady: Deferred[None] | None = None
        self._partError: Failure | None = None
        #: Chunks on disk and verified, kept from before or fetched now.
        self._verified: set[int] = set()
        #: Bytes of chunks kept from an interrupted earlier attempt.
        self.bytesReused = 0
        #: What happened to each chunk, in order: the download's evidence.
        self.timeline: list[dict[str, Any]] = []
        self._startedAt = reactor.seconds()
        #: Set once the download ended: late connections are closed at once.
        self._hungUp = False

    @property
    def manifest(self) -> Manifest | None:
        """The verified manifest, once a source supplied one."""
        return self._manifest

    @property
    def bytesDone(self) -> int:
        return sum(self.bytesBySource.values())

    @property
    def liveSources(self) -> list[str]:
        """Names of the sources still connected to this download."""
        live = [c for c in self._connections if not c.lost]
        return [c.sourceName for c in live]

    def start(self) -> Deferred[DownloadResult]:
        return Deferred.fromCoroutine(self._run())

    async def _run(self) -> DownloadResult:
        started = self._reactor.seconds()
        self._part.checkDestination()
        saver = LoopingCall(self.saveProgress)
        saver.clock = self._reactor
        saver.start(2.0, now=False)
        try:
            try:
                if self.info.size == 0:
                    await self._ensurePart(
                        Manifest(self.info.name, 0, self.info.sha256, ())
                    )
                else:
                    await self._fetch()
            finally:
                await self._closeConnections()
            if self._fatal is not None:
                raise self._fatal
            if self._scheduler is None or not self._scheduler.finished:
                if self._banned and set(self.sourceErrors) <= self._banned:
                    raise IntegrityError(
                        f"every source of {self.info.name} sent data that did not "
                        f"verify ({self._describeReasons()})"
                    )
                raise NoLiveSourceError(self._describeNoSource())
            self._part.finish()
        except BaseException:
            self.saveProgress()
            raise
        finally:
            saver.stop()
            self._part.close()
        return DownloadResult(
            name=self.info.name,
            path=self.destination,
            size=self.info.size,
            sha256=self.info.sha256,
            seconds=self._reactor.seconds() - started,
            bytes_fetched=self.bytesDone,
            sources=dict(self.bytesBySource),
            bytes_reused=self.bytesReused,
        )

    async def _fetch(self) -> None:
        """Run the sources' workers until done; look for new sources meanwhile.

        While the download runs, the central is asked every few seconds for
        sources we are not using (a secondary that came back, or a new one).
        When every source is gone, it is asked again with backoff for up to
        C{retryFor} seconds before the download gives up.
        """
        for source in self.sources:
            self._startWorker(source)
        refresher = None
        if self._findSources is not None:
            refresher = LoopingCall(lambda: Deferred.fromCoroutine(self._refresh()))
            refresher.clock = self._reactor
            refresher.start(self._refreshInterval, now=False)
        try:
            deadline, delay, progress = None, 0.5, self.bytesDone
            while True:
                while self._workers and not self._over():
                    # Wake when a worker ends or a chunk completes: a worker
                    # still connecting to a dead host must not hold up the end.
                    waits = list(self._workers.values())
                    if self._scheduler is not None:
                        waits.append(self._scheduler.changed())
                    await DeferredList(
                        waits, fireOnOneCallback=True, consumeErrors=True
                    )
                done = self._scheduler is not None and self._scheduler.finished
                if done or self._fatal is not None or self._findSources is None:
                    return
                if self.bytesDone > progress:
                    deadline, delay, progress = None, 0.5, self.bytesDone
                now = self._reactor.seconds()
                deadline = deadline if deadline is not None else now + self._retryFor
                if now >= deadline:
                    return
                await deferLater(self._reactor, min(delay, deadline - now))
                delay = min(delay * 2, 5.0)
                await self._refresh()
        finally:
            if refresher is not None and refresher.running:
                refresher.stop()

    def _over(self) -> bool:
        """True once every chunk is verified or the download failed for good."""
        finished = self._scheduler is not None and self._scheduler.finished
        return finished or self._fatal is not None

    async def _refresh(self) -> None:
        """Start a worker for every source the central lists that we lack."""
        assert self._findSources is not None
        try:
            sources = await self._findSources()
        except Exception as e:
            self.log.info("cannot ask for sources: {error}", error=describe_error(e))
            return
        for source in sources:
            self._startWorker(source)

    def _startWorker(self, source: SourceAddress) -> None:
        if source.name in self._workers or source.name in self._banned:
            return
        if self._fatal is not None or (
            self._scheduler is not None and self._scheduler.finished
        ):
            return
        if source.name in self.sourceErrors:
            self.log.info("trying source {source} again", source=source.name)
        worker = Deferred.fromCoroutine(self._work(source))
        if worker.called:
            return

        def ended(_: object) -> None:
            del self._workers[source.name]

        self._workers[source.name] = worker
        worker.addBoth(ended)

    def _describeReasons(self) -> str:
        return "; ".join(f"{name}: {why}" for name, why in self.sourceErrors.items())

    def _describeNoSource(self) -> str:
        reasons = self._describeReasons()
        retried = (
            f", none came back within {self._retryFor:g} s"
            if self._findSources is not None and self._retryFor
            else ""
        )
        kept = (
            f"; the partial data is kept in {self.partPath}"
            if self._manifest is not None
            else ""
        )
        return f"no live source left for {self.info.name} ({reasons}{retried}){kept}"

    def _dropSource(self, source: SourceAddress, why: str, bad: bool = False) -> None:
        self.sourceErrors[source.name] = why
        if bad:
            self._banned.add(source.name)
            if self._onBadSource is not None:
                self._onBadSource(source.name)
        self.log.warn("dropping source {source}: {why}", source=source.name, why=why)

    def _ensurePart(self, manifest: Manifest) -> Deferred[None]:
        """Open (or resume) the .part file once; every source waits for it."""
        if self._partReady is None:
            self._partReady = Deferred.fromCoroutine(self._openPart(manifest))
            self._partReady.addErrback(self._partFailed)
        waiter: Deferred[None] = Deferred()

        def relay(_: None) -> None:
            if self._partError is not None:
                waiter.errback(self._partError)
            else:
                waiter.callback(None)

        self._partReady.addCallback(relay)
        return waiter

    def _partFailed(self, reason: Failure) -> None:
        self._partError = reason

    async def _openPart(self, manifest: Manifest) -> None:
        kept = await self._part.open(manifest)
        self._manifest = manifest
        self._verified.update(kept)
        if kept:
            self.bytesReused = sum(manifest.chunk_range(i)[1] for i in kept)
            self._event("reused", None, None, chunks=len(kept))
            notice.info(
                "resuming {name}: {chunks} chunks ({size} bytes) already verified",
                name=manifest.name,
                chunks=len(kept),
                size=self.bytesReused,
            )
        missing = [
            i for i in range(len(manifest.chunk_hashes)) if i not in self._verified
        ]
        # Endgame copies are held in memory: only for chunks of a sane size.
        self._scheduler = ChunkScheduler(
            missing, endgame=manifest.chunk_size <= MAX_CHUNK_SIZE
        )

    def _event(
        self, event: str, index: int | None, source: str | None, **details: Any
    ) -> None:
        if len(self.timeline) >= MAX_TIMELINE_EVENTS:
            return
        entry = {
            "t": round(self._reactor.seconds() - self._startedAt, 3),
            "event": event,
            "chunk": index,
            "source": source,
            **details,
        }
        self.timeline.append(entry)

    def saveProgress(self) -> None:
        """Record which chunks are verified, so a later get can resume."""
        if self._manifest is not None and self._manifest.size:
            self._part.saveProgress(self._manifest, self._verified)

    async def _closeConnections(self) -> None:
        """Hang up on every source and wait until their writer threads ended."""
        self._hungUp = True
        for connection in self._connections:
            connection.transport.loseConnection()
        await DeferredList([c.writesDone for c in self._connections])

    def _fail(self, error: DownloadError) -> None:
        if self._fatal is None:
            self._fatal = error
        if self._scheduler is not None:
            self._scheduler.wake()

    async def _work(self, source: SourceAddress) -> None:
        """Connect to one source and keep its lanes busy until the end."""
        endpoint = self._connectSource(
            self._reactor, source.host, source.port, self._connectTimeout
        )
        try:
            connection = await connect_protocol(
                endpoint,
                SourceConnection(
                    self._clientName,
                    self._reactor,
                    self._progressTimeout,
                    source.name,
                    self._ticket,
                ),
            )
        except Exception as e:
            self._dropSource(source, f"cannot connect ({describe_error(e)})")
            return
        self._connections.append(connection)
        if self._hungUp:
            # Too late: the download ended while we were connecting.
            connection.welcomed.addErrback(lambda _: None)
            connection.transport.loseConnection()
            return
        try:
            await connection.welcomed
            manifest = await connection.fetchManifest(self.info)
        except Exception as e:
            self._dropSource(
                source,
                describe_error(e),
                isinstance(e, ProtocolError | ManifestMismatchError),
            )
            connection.transport.abortConnection()
            return
        if self._fatal is not None:
            return
        try:
            await self._ensurePart(manifest)
        except DiskError as e:
            self._fail(e)
            return
        if self._fatal is not None:
            return
        lanes = [
            Deferred.fromCoroutine(self._lane(source, connection))
            for _ in range(self._pipeline)
        ]
        await DeferredList(lanes, consumeErrors=True)

    async def _lane(self, source: SourceAddress, connection: SourceConnection) -> None:
        scheduler, manifest, fd = self._scheduler, self._manifest, self._part.fd
        assert scheduler is not None and manifest is not None and fd is not None
        while not scheduler.finished and not connection.lost and self._fatal is None:
            claim = scheduler.take(source.name)
            if claim is None:
                await scheduler.changed()
                continue
            index, direct = claim
            length = manifest.chunk_range(index)[1]
            sink = None if direct else MemorySink(length, manifest.chunk_hashes[index])
            self._event("start" if direct else "duplicate", index, source.name)
            try:
                await connection.fetchChunk(manifest, index, fd, sink)
            except LocalWriteError as e:
                self._event("failed", index, source.name, reason=f"local disk: {e}")
                scheduler.release(index, source.name)
                self._fail(DiskError(f"cannot write {self.partPath}: {e}"))
                return
            except Exception as e:
                why = (
                    f"no progress for {self._progressTimeout:g} s"
                    if connection.timedOut
                    else describe_error(e)
                )
                self._event("failed", index, source.name, reason=why)
                scheduler.release(index, source.name)
                self.retriedChunks += 1
                self._dropSource(
                    source,
                    f"chunk {index}: {why}",
                    isinstance(e, ChunkCorruptError | ProtocolError),
                )
                if not connection.lost:
                    connection.transport.abortConnection()
                return
            if sink is not None and not await self._placeDuplicate(index, sink):
                continue
            if scheduler.complete(index):
                self.bytesBySource[source.name] += length
                self._verified.add(index)
                self._event("verified", index, source.name)

    async def _placeDuplicate(self, index: int, sink: MemorySink) -> bool:
        """Write a winning endgame copy; False if the chunk was done meanwhile.

        The source still writing that chunk to the file is hung up on first,
        and its bytes already received are let land, so nothing of the slower
        copy can end up on top of the verified one.
        """
        scheduler, manifest, fd = self._scheduler, self._manifest, self._part.fd
        assert scheduler is not None and manifest is not None and fd is not None
        writer = scheduler.writer(index)
        if writer is not None:
            for slow in [c for c in self._connections if c.sourceName == writer]:
                slow.transport.abortConnection()
                await slow.writesDone
        if not scheduler.isPending(index):
            return False
        offset, _ = manifest.chunk_range(index)
        try:
            os.pwrite(fd, sink.data, offset)
        except OSError as e:
            self._fail(DiskError(f"cannot write {self.partPath}: {e.strerror}"))
            return False
        return True
