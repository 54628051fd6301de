"""One ``get`` from start to end: locate, wait for a slot, download, report, record.

The one-shot command line and the console both run downloads through
L{GetJob}, so both queue at the central the same way, report how the download
ended (which frees the slot), and leave the same record in the statistics.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall, deferLater

from redesdl.client.access import ClusterAccess
from redesdl.client.central import CentralConnection, connect_central
from redesdl.client.errors import UserError
from redesdl.client.stats import ClientStats
from redesdl.manifest import FileInfo
from redesdl.protocol import wire
from redesdl.protocol.errors import RemoteError
from redesdl.protocol.sources import SourceAddress
from redesdl.transfer.download import Download
from redesdl.transfer.errors import DestinationExistsError, DiskError
from redesdl.transfer.journal import remove_journal
from redesdl.transfer.partlock import claim_part
from redesdl.transfer.reasons import describe_error
from redesdl.transfer.result import DownloadResult
from redesdl.transfer.resume import remove_state
from redesdl.transfer.store import ChunkStore

#: Most catalog entries read to suggest names for a mistyped one.
MAX_SUGGESTION_SCAN = 2048
#: Failures that are the user's own setup, not the cluster's: not reported
#: to the central as failed downloads.
LOCAL_ERRORS = (DestinationExistsError, DiskError)


class InterruptedByUserError(Exception):
    """The user stopped the command (Ctrl-C) before it ended."""

    def __init__(self, part: str | None) -> None:
        super().__init__(part)
        self.part = part


def check_destination(path: str, overwrite: bool) -> None:
    """Fail at once, before queueing at the central, if PATH cannot be written."""
    ChunkStore(path, path + ".part", overwrite).check_destination()
    folder = os.path.dirname(os.path.abspath(path))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DiskError(f"cannot write in the folder {folder}")


def discard_partial(path: str) -> None:
    """Forget an earlier attempt at PATH: its ``.part``, snapshot and journal."""
    part = path + ".part"
    try:
        # Never from under a download still writing it; what is no regular
        # file (a symlink, a FIFO) is no download's, and is only removed.
        fd = None
        if not os.path.islink(part):
            with contextlib.suppress(OSError):  # not a regular file, or gone
                fd = claim_part(part, create=False)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            remove_state(part)
            remove_journal(part)
        finally:
            if fd is not None:
                os.close(fd)
    except OSError as e:
        raise DiskError(f"cannot remove {part}: {e.strerror or e}") from None


async def close_names(central: CentralConnection, name: str) -> list[str]:
    """Catalog names close to C{name}, read from a bounded part of the catalog.

    Only names in C{name}'s folder and names sharing its first characters
    are read (each walk stops where the prefix ends, and at
    L{MAX_SUGGESTION_SCAN} entries), never the whole catalog.
    """
    prefixes = []
    if "/" in name:
        prefixes.append(name.rsplit("/", 1)[0] + "/")
    prefixes += [name[:2], name[:1]]
    seen: set[str] = set()
    for prefix in dict.fromkeys(p for p in prefixes if p):
        read = 0
        async with aclosing(central.catalog_pages(after=prefix)) as pages:
            async for page in pages:
                names = [entry.info.name for entry in page]
                seen.update(n for n in names if n.startswith(prefix))
                read += len(names)
                if read >= MAX_SUGGESTION_SCAN or not names[-1].startswith(prefix):
                    break
        if len(seen) >= 3:
            break
    return difflib.get_close_matches(name, sorted(seen), n=3, cutoff=0.6)


#: Seconds between two progress reports to the central while downloading.
PROGRESS_INTERVAL = 2.0


def output_path(requested: str | None, name: str) -> str:
    """Where to save C{name}: its base name here, or inside a given folder."""
    basename = name.rsplit("/", 1)[-1]
    if requested is None:
        return basename
    if os.path.isdir(requested):
        return os.path.join(requested, basename)
    return requested


class GetJob:
    """Download one file the way ``redesdl get`` does."""

    def __init__(
        self,
        reactor: Any,
        access: ClusterAccess,
        clientName: str,
        name: str,
        output: str | None = None,
        overwrite: bool = False,
        stats: ClientStats | None = None,
        retryFor: float = 30.0,
        progressTimeout: float = 10.0,
        restart: bool = False,
        onVerified: Callable[[Download, int], None] | None = None,
        directIO: bool | None = None,
    ) -> None:
        self._reactor = reactor
        self._directIO = directIO
        self._access = access
        self._clientName = clientName
        self.name = name
        self._output = output
        self._overwrite = overwrite
        self._stats = stats
        self._retryFor = retryFor
        self._progressTimeout = progressTimeout
        self.state = "starting"
        self.download: Download | None = None
        self.queuedSeconds = 0.0
        self.downloadStarted: float | None = None
        self._started = 0.0
        #: The file and where it goes, once the central admitted this job:
        #: from then on a stopped job is recorded, download or not.
        self._admitted: tuple[FileInfo, str] | None = None
        self.ended = False
        self._restart = restart
        self._on_verified = onVerified
        self._running: Deferred[DownloadResult] | None = None
        self._stopping = False

    def _queued(self, position: int) -> None:
        self.state = f"queued, position {position}"

    def interrupted(self) -> None:
        """The process is stopping: record the job as interrupted, once, if
        the central admitted it, keeping what its download can resume."""
        if self.ended or (self.download is None and self._admitted is None):
            return
        if self.download is not None:
            self.download.saveProgress()
        self._record(self._started, None, "interrupted")

    def start(self) -> Deferred[DownloadResult]:
        """Run the job; L{stop} ends it early with L{InterruptedByUserError}."""
        self._running = Deferred.fromCoroutine(self.run())
        return self._running

    def stop(self) -> Deferred[None]:
        """End the job now (Ctrl-C); fires once it has wound down.

        A running download hangs up and keeps its ``.part``; a job still
        locating or queued stops waiting.
        """
        self._stopping = True
        running = self._running
        if running is None or running.called:
            return Deferred.fromCoroutine(_nothing())
        ended: Deferred[None] = Deferred()
        running.addBoth(lambda result: (ended.callback(None), result)[1])
        if self.download is not None and not self.ended:
            self.download.interrupt()
        else:
            running.cancel()
        return ended

    async def run(self) -> DownloadResult:
        try:
            return await self._run()
        except Exception as e:
            if not self._stopping:
                raise
            part = None
            if self.download is not None and os.path.exists(self.download.partPath):
                part = self.download.partPath
            raise InterruptedByUserError(part) from e

    async def _run(self) -> DownloadResult:
        started = self._started = time.time()
        destination = output_path(self._output, self.name)
        # Mistakes of our own are found before waiting in the central's queue.
        check_destination(destination, self._overwrite)
        self.state = "locating"
        access = self._access
        central = await connect_central(
            access.central, self._clientName, access.token, access.reply_timeout
        )
        try:
            info, sources = await self._locate(central)
            self.queuedSeconds = await central.admit(info.name, self._queued)
            self._admitted = (info, destination)
            # Located again now that we hold the slot: the sources may have
            # changed while we waited, and tickets go only to slot holders.
            info, sources = await self._locate(central)

            async def current_sources() -> list[SourceAddress]:
                latest, found = await central.locate(self.name)
                return found if latest.content == info.content else []

            if self._restart:
                discard_partial(destination)
            self.state = "downloading"
            self.downloadStarted = self._reactor.seconds()
            on_verified = self._on_verified
            self.download = download = Download(
                info,
                sources,
                destination,
                reactor=self._reactor,
                clientName=self._clientName,
                overwrite=self._overwrite,
                findSources=lambda: Deferred.fromCoroutine(current_sources()),
                retryFor=self._retryFor,
                progressTimeout=self._progressTimeout,
                onBadSource=lambda source: central.reportBadReplica(
                    info.name, info.sha256, source
                ),
                connectSource=access.connectSource,
                ticket=lambda: central.ticket(info.sha256),
                onVerified=(
                    None
                    if on_verified is None
                    else lambda index: on_verified(download, index)
                ),
                directIO=self._directIO,
            )
            reporting = self._report_progress(central, self.download)
            try:
                result = await self.download.start()
            except Exception as e:
                self.state = f"failed: {describe_error(e)}"
                if self._stopping:
                    self._record(started, None, "interrupted")
                else:
                    self._ended(central, started, None, describe_error(e), e)
                raise
            finally:
                if reporting.running:
                    reporting.stop()
            result.queued_seconds = self.queuedSeconds
            self.state = "done"
            self._ended(central, started, result, "")
        except GeneratorExit:
            # Closed, not cancelled (the process is exiting): no more awaits.
            central.close()
            raise
        except BaseException:
            if self._stopping:
                # Recorded unless it was already, or never admitted.
                self.interrupted()
            await central.close()
            raise
        await central.close()
        return result

    def _report_progress(
        self, central: CentralConnection, download: Download
    ) -> LoopingCall:
        """Tell the central how far C{download} is, every L{PROGRESS_INTERVAL} s
        (what its live dashboard shows)."""
        reactor = self._reactor
        since, then, sent = reactor.seconds(), download.bytesDone, 0

        def report() -> None:
            nonlocal since, then, sent
            if central.refuses_progress:
                loop.stop()
                return
            now, done = reactor.seconds(), download.bytesDone
            rate = max(done - then, 0) / (now - since) if now > since else 0.0
            since, then, sent = now, done, sent + 1
            errors = download.sourceErrors
            sources = sum(1 for s in download.sources if s.name not in errors)
            central.sendMessage(
                wire.Progress(sent, download.info.name, done, rate, sources)
            )

        loop = LoopingCall(report)
        loop.clock = self._reactor
        loop.start(PROGRESS_INTERVAL, now=False)
        return loop

    async def _locate(
        self, central: CentralConnection
    ) -> tuple[FileInfo, list[SourceAddress]]:
        """Locate the file; while no secondary holds it, ask again with backoff."""
        deadline = self._reactor.seconds() + self._retryFor
        delay = 0.5
        while True:
            try:
                return await central.locate(self.name)
            except RemoteError as e:
                if e.code == "not_found":
                    raise await self._not_found(central) from None
                if e.code != "no_source" or self._reactor.seconds() >= deadline:
                    raise
                self.state = "waiting for a live source"
            await deferLater(self._reactor, delay)
            delay = min(delay * 2, 5.0)

    async def _not_found(self, central: CentralConnection) -> UserError:
        """The error for a name the central does not know, with close names."""
        try:
            close = await close_names(central, self.name)
        except Exception:
            close = []
        if close:
            return UserError(
                f"no file named {self.name!r} on the central; did you mean "
                + " or ".join(repr(n) for n in close)
                + "?"
            )
        return UserError(
            f"no file named {self.name!r} on the central (see 'redesdl list')"
        )

    def _ended(
        self,
        central: CentralConnection,
        started: float,
        result: DownloadResult | None,
        reason: str,
        error: Exception | None = None,
    ) -> None:
        download = self.download
        assert download is not None
        fetched = result.bytes_fetched if result else download.bytesDone
        if not isinstance(error, LOCAL_ERRORS):
            central.report(
                download.info.name,
                result is not None,
                download.info.size,
                fetched,
                reason,
            )
        self._record(started, result, reason)

    def _record(
        self, started: float, result: DownloadResult | None, reason: str
    ) -> None:
        """Add this download to the client's statistics, once (a job stopped
        before its download began, as one that fetched nothing)."""
        download = self.download
        self.ended = True
        if self._stats is None:
            return
        if download is not None:
            info, destination = download.info, download.destination
            fetched = {
                "bytes_fetched": result.bytes_fetched if result else download.bytesDone,
                "bytes_reused": download.bytesReused,
                "sources": dict(download.bytesBySource),
                "retried_chunks": download.retriedChunks,
            }
        else:
            assert self._admitted is not None
            info, destination = self._admitted
            fetched = {
                "bytes_fetched": 0,
                "bytes_reused": 0,
                "sources": {},
                "retried_chunks": 0,
            }
        ended = time.time()
        self._stats.downloadEnded(
            {
                "file": info.name,
                "path": os.path.abspath(destination),
                "size": info.size,
                "sha256": info.sha256,
                "started": started,
                "ended": ended,
                "seconds": round(ended - started, 3),
                "queued_seconds": round(self.queuedSeconds, 3),
                **fetched,
                "result": "ok" if result is not None else "failed",
                "reason": reason,
                "timeline": download.timeline if download is not None else [],
            }
        )


async def _nothing() -> None:
    return None
