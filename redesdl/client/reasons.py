"""Short, human phrasings of the exceptions a download meets."""

from __future__ import annotations

from twisted.internet import error as net_error

from redesdl.protocol.errors import RemoteError


def describe_error(error: BaseException) -> str:
    """A few words saying what went wrong, for a log line or a message."""
    if isinstance(error, net_error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, net_error.TimeoutError | net_error.TCPTimedOutError):
        return "timed out"
    if isinstance(error, net_error.DNSLookupError):
        return "unknown host"
    if isinstance(error, net_error.ConnectionDone | net_error.ConnectionLost):
        return "connection lost"
    if isinstance(error, RemoteError):
        return f"{error.code}: {error.message}"
    return str(error).strip() or type(error).__name__
