"""Why a download or a command failed, each phrased for a person.

The download errors live with the transfer engine; they are named here too
because the CLI and its tests know them by this module.
"""

from __future__ import annotations

from redesdl.transfer.errors import (
    DestinationExistsError,
    DiskError,
    DownloadError,
    IntegrityError,
    NoLiveSourceError,
)

__all__ = [
    "DestinationExistsError",
    "DiskError",
    "DownloadError",
    "IntegrityError",
    "NoLiveSourceError",
    "UserError",
]


class UserError(Exception):
    """A failure already phrased for a person."""
