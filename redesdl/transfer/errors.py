"""Why a transfer failed: the errors a person reads, and those a source caused."""

from __future__ import annotations


class DownloadError(Exception):
    """A download failed; the message is one line for a person."""


class NoLiveSourceError(DownloadError):
    """Every source failed or none could be reached."""


class IntegrityError(DownloadError):
    """Every source that answered sent bytes that did not verify, or the
    finished file would not be the content asked for."""


class DestinationExistsError(DownloadError):
    """The destination exists and overwriting was not asked for."""


class DiskError(DownloadError):
    """Our own disk refused the bytes (full, read-only, missing folder)."""


class ChunkCorruptError(Exception):
    """A chunk's bytes did not match the manifest: the source lied or rotted."""


class ManifestMismatchError(Exception):
    """A source's manifest is not the content the central vouches for."""


class SourceViolationError(Exception):
    """A source sent something no request of ours was waiting for."""


class LocalWriteError(Exception):
    """Writing received bytes to our own disk failed (full disk, I/O error)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.error = error


class StoreError(Exception):
    """A write the store refused: it is not inside a chunk asked of its writer."""


class OutsideChunkError(StoreError):
    """Bytes for another chunk, or past the end of the requested one."""


class ChunkClosedError(StoreError):
    """Bytes for a chunk already verified, or whose request was taken back."""
