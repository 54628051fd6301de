"""The download loop: one file from every source at once, verified, then renamed.

Each source gets one connection and a few pipelined requests ("lanes"). A
lane asks the L{TransferPlan} for a chunk, has the store hand out a target for
it, and fetches it; the store verifies it. A chunk that fails goes back for
another source and its source is dropped from this download (banned, if it
lied or broke the protocol). At the end, an idle source copies a chunk still
in flight elsewhere only where L{ChunkPace} judges the copy pays; the source
a winning copy outpaced is hung up on and connected again on the next turn.
The download succeeds while one source stays alive; the store renames
``PATH.part`` to PATH only when every chunk verified.
The client's ``get`` and the secondary's replication both use this loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from itertools import islice
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from redesdl.endpoints import plain_endpoint
from redesdl.manifest import FileInfo, Manifest
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.sources import SourceAddress
from redesdl.protocol.wire import Ticket
from redesdl.transfer.directio import DIRECT_QUEUED_BYTES
from redesdl.transfer.errors import (
    ChunkCorruptError,
    DiskError,
    DownloadError,
    IntegrityError,
    LocalWriteError,
    ManifestMismatchError,
    NoLiveSourceError,
    SourceViolationError,
)
from redesdl.transfer.fetcher import Fetcher, OpenSource, tcp_sources
from redesdl.transfer.pace import ChunkPace
from redesdl.transfer.plan import Claim, TransferPlan
from redesdl.transfer.reasons import describe_error
from redesdl.transfer.result import DownloadResult, Timeline
from redesdl.transfer.store import (
    ChunkStore,
    ChunkWriter,
    MemoryCopy,
    ScratchCopy,
    notice,
)
from redesdl.transfer.writer import HIGH_WATER

#: Bytes the endgame's duplicates may hold in memory at once, per download
#: (each holds its whole chunk until it verifies). A duplicate that would go
#: over it is written to the store's scratch file instead.
COPY_BUDGET = 4 * 1024 * 1024

#: Sources whose failure a download's error line names; the rest are counted.
REASONS_SHOWN = 5

#: Failures that mean the source lied or broke the protocol: it is banned.
BAD_SOURCE = (
    ProtocolError,
    ManifestMismatchError,
    ChunkCorruptError,
    SourceViolationError,
)


class Download:
    """Fetch the content C{info} from C{sources} into C{destination}.

    Its public attributes keep the names the CLI's job and stats read.
    """

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
        ticket: Callable[[], Ticket | None] = lambda: None,
        openSource: OpenSource | None = None,
        copyBudget: int = COPY_BUDGET,
        onVerified: Callable[[int], None] | None = None,
        directIO: bool | None = False,
    ) -> None:
        self.info = info
        self.sources = list(sources)
        self.destination = destination
        self.partPath = partPath or destination + ".part"
        self._reactor = reactor
        self._pipeline = pipeline
        self._progress_timeout = progressTimeout
        self._open_source = openSource or tcp_sources(
            reactor,
            client_name=clientName,
            connect_timeout=connectTimeout,
            progress_timeout=progressTimeout,
            connect_source=connectSource,
            ticket=ticket,
            queued_bytes=HIGH_WATER if directIO is False else DIRECT_QUEUED_BYTES,
        )
        self.store = ChunkStore(destination, self.partPath, overwrite, directIO)
        self._plan: TransferPlan | None = None
        self._fatal: DownloadError | None = None
        self._fetchers: list[Fetcher] = []
        self.bytesBySource: Counter[str] = Counter()
        #: Why each dropped source was dropped, for the final error message.
        self.sourceErrors: dict[str, str] = {}
        #: Chunks that failed once and went back to be fetched again.
        self.retriedChunks = 0
        self._find_sources = findSources
        self._on_bad_source = onBadSource
        self._retry_for = retryFor
        self._refresh_interval = refreshInterval
        #: The running worker of each source, by name.
        self._workers: dict[str, Deferred[None]] = {}
        #: Sources that lied or broke the protocol, banned for this download.
        self._banned: set[str] = set()
        self._store_ready: Deferred[None] | None = None
        self._store_error: Failure | None = None
        self._waiters: list[Deferred[None]] = []
        #: Bytes of chunks kept from an interrupted earlier attempt.
        self.bytesReused = 0
        self._timeline = Timeline(reactor)
        #: What happened to each chunk, in order: the download's evidence.
        self.timeline = self._timeline.events
        #: Set once the download ended: late connections are closed at once.
        self._hung_up = False
        #: Sources we hung up on in the endgame, not for a fault of theirs (a
        #: copy of their chunk won, or replaced their stalled copy), and why:
        #: each is connected again on the reactor's next turn.
        self._outpaced: dict[str, str] = {}
        #: Workers waiting for the reactor's next turn to connect again.
        self._next_turns: set[Deferred[None]] = set()
        #: Connections being opened: cancelled if the download ends first.
        self._connecting: set[Deferred[Fetcher]] = set()
        #: Each source's pace, to judge which endgame copies pay.
        self._pace = ChunkPace()
        #: Wakes the lanes when a chunk's owner becomes overdue.
        self._look_again: IDelayedCall | None = None
        self._copy_budget = copyBudget
        #: Bytes the endgame's memory copies hold now (never over the budget).
        self.copyBytes = 0
        #: Why the scratch file cannot hold duplicates, once it failed.
        self._scratch_error: str | None = None
        #: Sources whose drop was reported since their worker started.
        self._reported: set[str] = set()
        #: When fetching began (after any resumed chunks were checked).
        self.fetchStarted: float | None = None
        #: Called with each chunk's index once it is verified (or reused).
        self._on_verified = onVerified
        self.interrupted = False

    @property
    def manifest(self) -> Manifest | None:
        """The verified manifest, once a source supplied one."""
        return self.store.manifest

    @property
    def bytesDone(self) -> int:
        return sum(self.bytesBySource.values())

    @property
    def liveSources(self) -> list[str]:
        """Names of the sources still connected to this download."""
        return [f.source_name for f in self._fetchers if not f.lost]

    def start(self) -> Deferred[DownloadResult]:
        return Deferred.fromCoroutine(self._run())

    def interrupt(self) -> None:
        """End the download now, keeping the ``.part`` for a later resume."""
        self.interrupted = True
        self._fail(DownloadError(f"interrupted; the data is kept in {self.partPath}"))

    async def _run(self) -> DownloadResult:
        started = self._reactor.seconds()
        self.store.check_destination()
        saver = LoopingCall(self.saveProgress)
        saver.clock = self._reactor
        saver.start(2.0, now=False)
        try:
            try:
                if self.info.size == 0:
                    empty = Manifest(self.info.name, 0, self.info.sha256, ())
                    await self._ensure_store(empty)
                else:
                    await self._fetch()
            except GeneratorExit:
                # Closed, not cancelled (the process is exiting): nothing may
                # be awaited any more, so hang up without waiting.
                self._hang_up()
                raise
            except BaseException:
                await self._close_fetchers()
                raise
            await self._close_fetchers()
            if self._fatal is not None:
                raise self._fatal
            if self._plan is None or not self._plan.finished:
                if self._banned and set(self.sourceErrors) <= self._banned:
                    raise IntegrityError(
                        f"every source of {self.info.name} sent data that did not "
                        f"verify ({self._describe_reasons()})"
                    )
                raise NoLiveSourceError(self._describe_no_source())
            self.store.finish()
        except BaseException:
            self.saveProgress()
            raise
        finally:
            saver.stop()
            self.store.close()
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

    def _changed(self) -> Deferred[None]:
        """Fire when a chunk is released or completed, or the download ends."""
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    async def _fetch(self) -> None:
        """Run the sources' workers until done; look for new sources meanwhile.

        While the download runs, the central is asked every few seconds for
        sources we are not using (a secondary that came back, or a new one).
        When every source is gone, it is asked again with backoff for up to
        C{retryFor} seconds before the download gives up.
        """
        for source in self.sources:
            self._start_worker(source)
        refresher = None
        if self._find_sources is not None:
            refresher = LoopingCall(lambda: Deferred.fromCoroutine(self._refresh()))
            refresher.clock = self._reactor
            refresher.start(self._refresh_interval, now=False)
        try:
            deadline, delay, progress = None, 0.5, self.bytesDone
            while True:
                while self._workers and not self._over():
                    # Wake when a worker ends or a chunk completes: a worker
                    # still connecting to a dead host must not hold up the end.
                    waits = [*self._workers.values(), self._changed()]
                    await DeferredList(
                        waits, fireOnOneCallback=True, consumeErrors=True
                    )
                done = self._plan is not None and self._plan.finished
                if done or self._fatal is not None or self._find_sources is None:
                    return
                if self.bytesDone > progress:
                    deadline, delay, progress = None, 0.5, self.bytesDone
                now = self._reactor.seconds()
                deadline = deadline if deadline is not None else now + self._retry_for
                if now >= deadline:
                    return
                await DeferredList(
                    [
                        deferLater(self._reactor, min(delay, deadline - now)),
                        self._changed(),
                    ],
                    fireOnOneCallback=True,
                    consumeErrors=True,
                )
                if self._fatal is not None:
                    return
                delay = min(delay * 2, 5.0)
                await self._refresh()
        finally:
            if refresher is not None and refresher.running:
                refresher.stop()

    def _over(self) -> bool:
        """True once every chunk is verified or the download failed for good."""
        finished = self._plan is not None and self._plan.finished
        return finished or self._fatal is not None

    async def _refresh(self) -> None:
        """Start a worker for every source the central lists that we lack."""
        assert self._find_sources is not None
        try:
            sources = await self._find_sources()
        except Exception as e:
            self.log.info("cannot ask for sources: {error}", error=describe_error(e))
            return
        for source in sources:
            self._start_worker(source)

    def _start_worker(self, source: SourceAddress, again: bool = False) -> None:
        if source.name in self._workers or source.name in self._banned:
            return
        if self._over():
            return
        if source.name in self.sourceErrors:
            self.log.info("trying source {source} again", source=source.name)
        # A fresh connection: a later failure is its own, not the endgame's.
        self._outpaced.pop(source.name, None)
        self._reported.discard(source.name)
        worker = Deferred.fromCoroutine(self._work(source, again))
        if worker.called:
            return

        def ended(_: object) -> None:
            del self._workers[source.name]
            if source.name in self._outpaced and not self._hung_up:
                # We hung up only to cancel one request of its (a chunk a copy
                # won, or a stalled copy replaced): it is not at fault, and may
                # be the one left if another source dies or stalls next.
                # Without a central to list it again (a secondary's
                # replication), nothing else would bring it back.
                self._start_worker(source, again=True)

        self._workers[source.name] = worker
        worker.addBoth(ended)

    def _describe_reasons(self) -> str:
        """Why sources failed, for one line: the first few, then a count."""
        said = [
            f"{name}: {why}"
            for name, why in islice(self.sourceErrors.items(), REASONS_SHOWN)
        ]
        more = len(self.sourceErrors) - len(said)
        if more > 0:
            said.append(f"and {more} more")
        return "; ".join(said)

    def _describe_no_source(self) -> str:
        reasons = self._describe_reasons() or "the central listed none"
        retried = (
            f", none came back within {self._retry_for:g} s"
            if self._find_sources is not None and self._retry_for
            else ""
        )
        kept = (
            f"; the partial data is kept in {self.partPath}"
            if self.manifest is not None
            else ""
        )
        return f"no live source left for {self.info.name} ({reasons}{retried}){kept}"

    def _drop_source(self, name: str, why: str, bad: bool = False) -> None:
        if name not in self._banned:
            # A banned source keeps the reason it was banned for, not that of
            # the hang-up that follows.
            self.sourceErrors[name] = why
        if bad and name not in self._banned:
            self._banned.add(name)
            if self._plan is not None:
                self._plan.ban(name)
            if self._on_bad_source is not None:
                self._on_bad_source(name)
        if name not in self._reported:
            # Once per source: each of its lanes fails with the connection.
            self._reported.add(name)
            self.log.emit(
                LogLevel.info if name in self._outpaced else LogLevel.warn,
                "dropping source {source}: {why}",
                source=name,
                why=why,
            )
        self._wake()

    def _ensure_store(self, manifest: Manifest) -> Deferred[None]:
        """Open (or resume) the .part file once; every source waits for it."""
        if self._store_ready is None:
            self._store_ready = Deferred.fromCoroutine(self._open_store(manifest))
            self._store_ready.addErrback(self._store_failed)
        waiter: Deferred[None] = Deferred()

        def relay(_: None) -> None:
            if self._store_error is not None:
                waiter.errback(self._store_error)
            else:
                waiter.callback(None)

        self._store_ready.addCallback(relay)
        return waiter

    def _store_failed(self, reason: Failure) -> None:
        self._store_error = reason

    async def _open_store(self, manifest: Manifest) -> None:
        kept = await self.store.open(manifest)
        if kept:
            self.bytesReused = sum(manifest.chunk_range(i)[1] for i in kept)
            self._timeline.add("reused", None, None, chunks=len(kept))
            notice.info(
                "resuming {name}: {chunks} chunks ({size} bytes) already verified",
                name=manifest.name,
                chunks=len(kept),
                size=self.bytesReused,
            )
        missing = [
            i for i in range(len(manifest.chunk_hashes)) if i not in self.store.verified
        ]
        self._plan = TransferPlan(missing)
        for name in self._banned:
            self._plan.ban(name)
        self.fetchStarted = self._reactor.seconds()
        if self._on_verified is not None:
            for index in sorted(kept):
                self._on_verified(index)

    def saveProgress(self) -> None:
        """Record which chunks are verified, so a later get can resume."""
        self.store.save_progress()

    async def _close_fetchers(self) -> None:
        """Hang up on every source and wait until their writer threads ended."""
        self._hang_up()
        await DeferredList([f.writes_done for f in self._fetchers])

    def _hang_up(self) -> None:
        self._hung_up = True
        for pending in [*self._next_turns, *self._connecting]:
            pending.cancel()
        if self._look_again is not None and self._look_again.active():
            self._look_again.cancel()
        for fetcher in self._fetchers:
            fetcher.close()

    def _fail(self, error: DownloadError) -> None:
        if self._fatal is None:
            self._fatal = error
        self._wake()

    async def _work(self, source: SourceAddress, again: bool = False) -> None:
        """Connect to one source and keep its lanes busy until the end; C{again}
        on the reactor's next turn, not inside the calls that hung up on it."""
        if again:
            turn = deferLater(self._reactor, 0)
            self._next_turns.add(turn)
            try:
                await turn
            finally:
                self._next_turns.discard(turn)
        connecting = self._open_source(source)
        self._connecting.add(connecting)
        try:
            fetcher = await connecting
        except Exception as e:
            if not self._hung_up:
                self._drop_source(source.name, f"cannot connect ({describe_error(e)})")
            return
        finally:
            self._connecting.discard(connecting)
        self._fetchers.append(fetcher)
        if self._hung_up:
            # Too late: the download ended while we were connecting.
            fetcher.welcomed.addErrback(lambda _: None)
            fetcher.close()
            return
        try:
            await fetcher.welcomed
            manifest = await fetcher.fetch_manifest(self.info)
        except Exception as e:
            self._drop_source(source.name, describe_error(e), isinstance(e, BAD_SOURCE))
            fetcher.abort()
            return
        if self._fatal is not None:
            return
        # Live again, if it was dropped before: no longer among the reasons.
        self.sourceErrors.pop(source.name, None)
        try:
            await self._ensure_store(manifest)
        except DiskError as e:
            self._fail(e)
            return
        if self._fatal is not None:
            return
        lanes = [
            Deferred.fromCoroutine(self._lane(source.name, fetcher)).addErrback(
                self._lane_crashed, source.name
            )
            for _ in range(self._pipeline)
        ]
        await DeferredList(lanes)

    def _lane_crashed(self, reason: Failure, name: str) -> None:
        """A bug, not a source's fault: fail loudly rather than hang."""
        self.log.failure("fetching from {source} failed", reason, source=name)
        self._fail(DownloadError(f"internal error: {reason.getErrorMessage()}"))

    def _running(self, name: str, fetcher: Fetcher) -> bool:
        plan = self._plan
        assert plan is not None
        return not (
            plan.finished or fetcher.lost or self._fatal or plan.is_banned(name)
        )

    async def _lane(self, name: str, fetcher: Fetcher) -> None:
        plan, manifest = self._plan, self.manifest
        assert plan is not None and manifest is not None
        while self._running(name, fetcher):
            now = self._reactor.seconds()
            claim = plan.take(
                name,
                partial(self._pace.copy_pays, idle=name, now=now),
                partial(self._pace.stalled, idle=name, now=now),
            )
            if claim is None:
                self._look_again_for(name, now)
                await self._changed()
                continue
            index = claim.index
            if not claim.direct:
                self._replace_stalled_copies(index, name)
            store = self.store
            if store.is_verified(index):
                # Verified through a request the plan had taken back meanwhile.
                plan.complete(index, name)
                self._wake()
                continue
            try:
                target = self._target(claim)
            except DiskError as e:
                self._scratch_failed(str(e))
                target = None
            if target is None:
                # No room for another copy (the scratch file failed): leave
                # the chunk to its fetcher.
                plan.fail(index, name)
                await self._changed()
                continue
            length = target.length if isinstance(target, MemoryCopy) else 0
            self._pace.claimed(index, name, now)
            self._timeline.add("start" if claim.direct else "duplicate", index, name)
            self.copyBytes += length
            try:
                won = await fetcher.fetch_chunk(
                    manifest, target, self._accept_from(name, index)
                )
            except (LocalWriteError, DiskError) as e:
                self.store.abandon(target)
                self._pace.dropped(index, name)
                if isinstance(e, LocalWriteError) and isinstance(target, ScratchCopy):
                    # The scratch file failed (full?), not the .part: only
                    # this duplicate is lost, the chunk's fetcher goes on.
                    why = f"scratch file: {e}"
                    self._timeline.add("failed", index, name, reason=why)
                    plan.fail(index, name)
                    self._scratch_failed(why)
                    continue
                self._timeline.add("failed", index, name, reason=f"local disk: {e}")
                plan.fail(index, name)
                self._fail(
                    e
                    if isinstance(e, DiskError)
                    else DiskError(f"cannot write {self.partPath}: {e}")
                )
                return
            except Exception as e:
                self._chunk_failed(name, fetcher, index, target, e)
                return
            finally:
                self.copyBytes -= length
            if won:
                self._chunk_verified(name, index, claim.direct)
            else:
                self._pace.dropped(index, name)

    def _look_again_for(self, idle: str, now: float) -> None:
        """Wake the lanes when a source holding a chunk becomes overdue, so
        that C{idle} copies it then (or copies it again, if the overdue
        source held a copy), not at that source's progress timeout."""
        plan = self._plan
        assert plan is not None
        if self._hung_up:
            return
        when = self._pace.next_look(plan.in_flight(), idle, now)
        pending = self._look_again
        if when is None:
            return
        if pending is not None and pending.active():
            if pending.getTime() <= when:
                return
            pending.cancel()
        self._look_again = self._reactor.callLater(when - now, self._wake)

    def _target(self, claim: Claim) -> ChunkWriter | MemoryCopy | None:
        """Where a claimed chunk's bytes go: the file if the claim is direct;
        a duplicate in memory within the budget, else in the scratch file
        (None once the scratch file failed)."""
        store, index = self.store, claim.index
        if claim.direct:
            return store.begin(index)
        assert self.manifest is not None
        if self.copyBytes + self.manifest.chunk_range(index)[1] <= self._copy_budget:
            return store.begin_copy(index)
        if self._scratch_error is not None:
            return None
        return store.begin_scratch(index)

    def _scratch_failed(self, why: str) -> None:
        """Duplicates too big for memory are off for the rest of this download."""
        if self._scratch_error is None:
            self._scratch_error = why
            self.log.warn(
                "no more endgame duplicates on disk for {name}: {why}",
                name=self.info.name,
                why=why,
            )

    def _accept_from(
        self, name: str, index: int
    ) -> Callable[[ChunkWriter | MemoryCopy], bool]:
        """Let the store verify a chunk only while C{name} still holds it."""
        plan = self._plan
        assert plan is not None

        def accept(target: ChunkWriter | MemoryCopy) -> bool:
            if name not in plan.holders(index):
                self.store.abandon(target)
                return False
            return self.store.verify(target)

        return accept

    def _replace_stalled_copies(self, index: int, taker: str) -> None:
        """C{taker} copies chunk C{index} again: hang up on the sources whose
        copies of it stalled (the plan offers the chunk only then). A chunk's
        copies share its place in the scratch file, so only one may run."""
        plan = self._plan
        assert plan is not None
        for holder in plan.holders(index):
            if holder not in (taker, plan.writer(index)):
                self._outpace(
                    holder,
                    f"its copy of chunk {index} stalled; {taker} fetches it again",
                    "{winner} fetches chunk {index} again; cancelled the stalled "
                    "copy from {source}",
                    index,
                    taker,
                )

    def _outpace(self, name: str, why: str, said: str, index: int, winner: str) -> None:
        """Hang up on C{name} to cancel its request for chunk C{index} (the
        protocol cannot cancel one): not for a fault of its own, so it is
        connected again. C{said} is the log line, with C{index}, C{winner}
        and C{source} as its fields."""
        for fetcher in self._fetchers:
            if fetcher.source_name != name or name in self._reported:
                continue
            if not (fetcher.lost or fetcher.timed_out):
                self._outpaced[name] = why
                # Said here, once: its requests now end as "connection lost".
                self._reported.add(name)
                self.log.info(said, index=index, winner=winner, source=name)
                fetcher.abort()

    def _chunk_verified(self, name: str, index: int, direct: bool) -> None:
        plan = self._plan
        assert plan is not None and self.manifest is not None
        slow = plan.writer(index)
        if not direct and slow is not None:
            # Its writer is closed already; stop its stream too.
            self._outpace(
                slow,
                "another source finished its chunk first (endgame)",
                "chunk {index} also arrived from {winner}; cancelled the duplicate "
                "from {source}",
                index,
                name,
            )
        plan.complete(index, name)
        self._pace.verified(index, name, self._reactor.seconds())
        self.bytesBySource[name] += self.manifest.chunk_range(index)[1]
        self._timeline.add("verified", index, name)
        if self._on_verified is not None:
            self._on_verified(index)
        self._wake()

    def _chunk_failed(
        self,
        name: str,
        fetcher: Fetcher,
        index: int,
        target: ChunkWriter | MemoryCopy,
        error: Exception,
    ) -> None:
        plan = self._plan
        assert plan is not None
        self.store.abandon(target)
        self._pace.dropped(index, name)
        if self._hung_up:
            # We hung up on it: the request ended with the download.
            return
        if name in self._outpaced:
            why = self._outpaced[name]
        elif fetcher.timed_out:
            why = f"no progress for {self._progress_timeout:g} s"
        else:
            why = describe_error(error)
        self._timeline.add("failed", index, name, reason=why)
        plan.fail(index, name)
        self.retriedChunks += 1
        self._drop_source(name, f"chunk {index}: {why}", isinstance(error, BAD_SOURCE))
        if not fetcher.lost:
            fetcher.abort()
