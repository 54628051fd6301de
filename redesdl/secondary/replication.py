"""Copy a file this secondary lacks from its peers, with the transfer engine.

The copy is staged in the hidden ``.redesdl-incoming`` folder of the data
folder (never indexed, and on the same file system so the final rename is
atomic), verified chunk by chunk by the engine's store, checked once more
(every chunk verified, a regular file of the right size), then linked to its
name without ever replacing an existing file or creating a folder outside the
data folder. The index serves it once its own hash of the placed file matches.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from redesdl.endpoints import plain_endpoint
from redesdl.manifest import FileInfo
from redesdl.protocol.sources import SourceAddress
from redesdl.protocol.wire import Ticket
from redesdl.secondary.index import DataIndex
from redesdl.transfer.download import Download
from redesdl.transfer.errors import DownloadError, IntegrityError
from redesdl.transfer.journal import journal_path
from redesdl.transfer.placement import check_copy, open_folder_inside, place_inside
from redesdl.transfer.resume import state_path

STAGING_FOLDER = ".redesdl-incoming"

#: Called as report(name, ok, reason) when a copy ends.
Report = Callable[[str, bool, str], None]


class Replicator:
    """Run the copies the central asks for, one per name at a time."""

    log = Logger()

    def __init__(
        self,
        index: DataIndex,
        name: str,
        reactor: Any,
        report: Report,
        connectSource: Callable[..., IStreamClientEndpoint] = plain_endpoint,
    ) -> None:
        self._connectSource = connectSource
        self._index = index
        self._name = name
        self._reactor = reactor
        self._report = report
        self.active: dict[str, Download] = {}
        #: When each active copy began (reactor time), for its rate and ETA.
        self.started: dict[str, float] = {}

    def replicate(
        self,
        info: FileInfo,
        sources: list[SourceAddress],
        ticket: Ticket | None = None,
    ) -> None:
        if info.name in self.active:
            return
        target = self._index.data.descendant(info.name.split("/"))
        if target.exists() or info.name in self._index.entries:
            self._report(info.name, False, "a file with that name exists here")
            return
        peers = [source for source in sources if source.name != self._name]
        if not peers:
            self._report(info.name, False, "no peer to copy from")
            return
        staging = self._index.data.child(STAGING_FOLDER)
        try:
            os.close(open_folder_inside(self._index.data.path, [STAGING_FOLDER]))
        except OSError as e:
            self._report(
                info.name, False, f"cannot create {staging.path}: {e.strerror}"
            )
            return
        # One staging file per name: two names may hold the same content.
        staged = staging.child(hashlib.sha256(info.name.encode()).hexdigest())
        download = Download(
            info,
            peers,
            staged.path,
            reactor=self._reactor,
            clientName=self._name,
            overwrite=True,
            connectSource=self._connectSource,
            ticket=lambda: ticket,
        )
        self.active[info.name] = download
        self.started[info.name] = self._reactor.seconds()
        self.log.info(
            "copying {name} from {peers}",
            name=info.name,
            peers=", ".join(p.name for p in peers),
        )
        download.start().addCallbacks(
            self._copied,
            self._failed,
            callbackArgs=(download, staged, target),
            errbackArgs=(download, staged),
        )

    def _copied(
        self, result: Any, download: Download, staged: FilePath, target: FilePath
    ) -> None:
        name = download.info.name
        del self.active[name]
        self.started.pop(name, None)
        manifest = download.manifest
        try:
            assert manifest is not None and manifest.matches(download.info)
            missing = len(manifest.chunk_hashes) - len(download.store.verified)
            if missing:
                raise IntegrityError(f"{missing} chunks never verified")
            check_copy(staged.path, manifest)
        except (AssertionError, IntegrityError, OSError) as e:
            self._discard(staged)
            self._report(name, False, f"refusing the copy of {name}: {e}")
            return
        try:
            placed = place_inside(self._index.data.path, name, staged.path)
        except OSError as e:
            self._discard(staged)
            why = e.strerror or str(e)
            if e.errno == errno.ELOOP:
                why = "its folder leads outside the data folder"
            self._report(name, False, f"cannot place {target.path}: {why}")
            return

        def adopted(ok: bool) -> None:
            if not ok:
                self._report(name, False, "the placed copy did not hash as expected")
                return
            self.log.info(
                "copied {name} ({size} bytes, verified)", name=name, size=result.size
            )
            self._report(name, True, "")

        adoption = Deferred.fromCoroutine(self._index.adopt(manifest, placed))
        adoption.addCallback(adopted)

    def _failed(self, reason: Any, download: Download, staged: FilePath) -> None:
        name = download.info.name
        del self.active[name]
        self.started.pop(name, None)
        if not reason.check(DownloadError):
            self.log.failure("copying {name} failed", reason, name=name)
        self._discard(staged)
        self._discard(FilePath(download.partPath))
        self._discard(state_path(download.partPath))
        self._discard(FilePath(journal_path(download.partPath)))
        self._report(name, False, reason.getErrorMessage())

    def _discard(self, path: FilePath) -> None:
        try:
            os.unlink(path.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            self.log.warn("cannot remove {path}: {error}", path=path.path, error=e)
