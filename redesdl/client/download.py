"""The client's name for the transfer engine's download (the CLI's job uses it)."""

from redesdl.transfer.download import Download, DownloadResult

__all__ = ["Download", "DownloadResult"]
