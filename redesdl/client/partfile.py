"""The file a download writes into: ``PATH.part``, reserved, resumable, then moved.

The whole size is reserved before the first byte arrives (a full disk fails
at once, and ext4 writes get several times cheaper). A ``.part`` left by an
interrupted attempt at the same content is kept, after its claimed chunks are
checked again; any other ``.part`` is started over. At the end the file is
fsynced and moved to PATH without ever replacing a file that appeared
meanwhile (unless overwriting was asked for).
"""

from __future__ import annotations

import contextlib
import os

from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from redesdl.client.errors import DestinationExistsError, DiskError
from redesdl.client.resume import (
    load_claimed,
    remove_state,
    save_state,
    still_valid,
)
from redesdl.fsutil import rename_no_replace
from redesdl.manifest import Manifest

#: Messages a person should see even without -v (the CLI shows this namespace).
notice = Logger(namespace="redesdl.notice")


class PartFile:
    """``PATH.part`` for one download, from reservation to rename."""

    log = Logger()

    def __init__(self, destination: str, partPath: str, overwrite: bool) -> None:
        self.destination = destination
        self.path = partPath
        self._overwrite = overwrite
        self.fd: int | None = None

    def checkDestination(self) -> None:
        """Fail before any work if PATH cannot or must not be written."""
        folder = os.path.dirname(os.path.abspath(self.destination))
        if not os.path.isdir(folder):
            raise DiskError(f"the folder {folder} does not exist")
        if os.path.lexists(self.destination) and not self._overwrite:
            raise DestinationExistsError(
                f"{self.destination} already exists (use --force to overwrite it)"
            )

    async def open(self, manifest: Manifest) -> list[int]:
        """Open and reserve the file; return the chunks kept from before."""
        claimed = None
        if os.path.exists(self.path):
            claimed = load_claimed(self.path, manifest)
            if claimed is None and os.path.getsize(self.path):
                notice.warn(
                    "{part} holds another version of {name} (or nothing to trust); "
                    "starting over",
                    part=self.path,
                    name=manifest.name,
                )
        try:
            flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if claimed is None else 0)
            self.fd = os.open(self.path, flags, 0o644)
            os.ftruncate(self.fd, manifest.size)
            if manifest.size:
                os.posix_fallocate(self.fd, 0, manifest.size)
        except OSError as e:
            if claimed is None:
                # Nothing worth keeping: do not leave an empty .part behind.
                self.close()
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            raise DiskError(
                f"cannot reserve {manifest.size} bytes for {self.path}: {e.strerror}"
            ) from None
        if not claimed:
            return []
        return await deferToThread(still_valid, self.fd, manifest, claimed)

    def saveProgress(self, manifest: Manifest, verified: set[int]) -> None:
        """Record which chunks are verified, so a later get can resume."""
        try:
            save_state(self.path, manifest, verified)
        except OSError as e:
            self.log.warn("cannot save {part}.json: {error}", part=self.path, error=e)

    def finish(self) -> None:
        """Make the bytes durable and move them to PATH."""
        assert self.fd is not None
        try:
            os.fsync(self.fd)
            if self._overwrite:
                os.replace(self.path, self.destination)
            else:
                rename_no_replace(self.path, self.destination)
        except FileExistsError:
            raise DestinationExistsError(
                f"{self.destination} appeared during the download; the data is "
                f"in {self.path}"
            ) from None
        except OSError as e:
            raise DiskError(
                f"cannot move {self.path} into place: {e.strerror}"
            ) from None
        remove_state(self.path)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
