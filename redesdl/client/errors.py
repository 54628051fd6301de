"""Why a download or a command failed, each phrased for a person."""

from __future__ import annotations


class DownloadError(Exception):
    """A download failed; the message is one line for a person."""


class NoLiveSourceError(DownloadError):
    """Every source failed or none could be reached."""


class IntegrityError(DownloadError):
    """Every source that answered sent bytes that did not verify."""


class DestinationExistsError(DownloadError):
    """The destination exists and overwriting was not asked for."""


class DiskError(DownloadError):
    """Our own disk refused the bytes (full, read-only, missing folder)."""


class UserError(Exception):
    """A failure already phrased for a person."""
