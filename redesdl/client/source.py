"""The client's name for a connection to one source, kept for older imports."""

from redesdl.transfer.source import SourceConnection

__all__ = ["SourceConnection"]
