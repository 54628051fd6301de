"""One ``get`` from start to end: locate, wait for a slot, download, report, record.

The one-shot command line and the console both run downloads through
L{GetJob}, so both queue at the central the same way, report how the download
ended (which frees the slot), and leave the same record in the statistics.
"""

from __future__ import annotations

import os
import time
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall, deferLater

from redesdl.client.access import ClusterAccess
from redesdl.client.central import CentralConnection, connect_central
from redesdl.client.stats import ClientStats
from redesdl.manifest import FileInfo
from redesdl.protocol import wire
from redesdl.protocol.errors import RemoteError
from redesdl.protocol.sources import SourceAddress
from redesdl.transfer.download import Download
from redesdl.transfer.reasons import describe_error
from redesdl.transfer.result import DownloadResult

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
    ) -> None:
        self._reactor = reactor
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
        self.ended = False

    def _queued(self, position: int) -> None:
        self.state = f"queued, position {position}"

    def interrupted(self) -> None:
        """The process is stopping mid-download: keep what can be resumed."""
        if self.download is not None and not self.ended:
            self.download.saveProgress()
            self._record(self._started, None, "interrupted")

    async def run(self) -> DownloadResult:
        started = self._started = time.time()
        self.state = "locating"
        access = self._access
        central = await connect_central(access.central, self._clientName, access.token)
        try:
            info, sources = await self._locate(central)
            self.queuedSeconds = await central.admit(info.name, self._queued)
            # Located again now that we hold the slot: the sources may have
            # changed while we waited, and tickets go only to slot holders.
            info, sources = await self._locate(central)

            async def current_sources() -> list[SourceAddress]:
                latest, found = await central.locate(self.name)
                return found if latest.content == info.content else []

            self.state = "downloading"
            self.downloadStarted = self._reactor.seconds()
            self.download = Download(
                info,
                sources,
                output_path(self._output, self.name),
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
            )
            reporting = self._report_progress(central, self.download)
            try:
                result = await self.download.start()
            except Exception as e:
                self.state = f"failed: {describe_error(e)}"
                self._ended(central, started, None, describe_error(e))
                raise
            finally:
                if reporting.running:
                    reporting.stop()
            result.queued_seconds = self.queuedSeconds
            self.state = "done"
            self._ended(central, started, result, "")
            return result
        finally:
            await central.close()

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
                if e.code != "no_source" or self._reactor.seconds() >= deadline:
                    raise
                self.state = "waiting for a live source"
            await deferLater(self._reactor, delay)
            delay = min(delay * 2, 5.0)

    def _ended(
        self,
        central: CentralConnection,
        started: float,
        result: DownloadResult | None,
        reason: str,
    ) -> None:
        download = self.download
        assert download is not None
        fetched = result.bytes_fetched if result else download.bytesDone
        central.report(
            download.info.name, result is not None, download.info.size, fetched, reason
        )
        self._record(started, result, reason)

    def _record(
        self, started: float, result: DownloadResult | None, reason: str
    ) -> None:
        """Add this download to the client's statistics, once."""
        download = self.download
        assert download is not None
        self.ended = True
        if self._stats is None:
            return
        ended = time.time()
        self._stats.downloadEnded(
            {
                "file": download.info.name,
                "path": os.path.abspath(download.destination),
                "size": download.info.size,
                "sha256": download.info.sha256,
                "started": started,
                "ended": ended,
                "seconds": round(ended - started, 3),
                "queued_seconds": round(self.queuedSeconds, 3),
                "bytes_fetched": result.bytes_fetched if result else download.bytesDone,
                "bytes_reused": download.bytesReused,
                "sources": dict(download.bytesBySource),
                "retried_chunks": download.retriedChunks,
                "result": "ok" if result is not None else "failed",
                "reason": reason,
                "timeline": download.timeline,
            }
        )
