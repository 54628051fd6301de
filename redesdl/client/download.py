"""The client's name for the transfer engine's download (the CLI's job uses it)."""

from redesdl.transfer.download import Download
from redesdl.transfer.result import DownloadResult

__all__ = ["Download", "DownloadResult"]
