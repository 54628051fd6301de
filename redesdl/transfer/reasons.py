"""Short, human phrasings of the exceptions a transfer meets."""

from __future__ import annotations

from twisted.internet import error as net_error

try:
    from OpenSSL.SSL import Error as TLSError
except ImportError:
    # A plain client runs without the TLS stack (redesdl.client.launch), so
    # no TLS error can reach it.
    class TLSError(Exception):  # type: ignore[no-redef]
        """Stands for pyOpenSSL's error where pyOpenSSL is not loaded."""


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
    if isinstance(error, TLSError):
        return "TLS failed: " + describe_tls_error(error)
    return str(error).strip() or type(error).__name__


def describe_tls_error(error: TLSError) -> str:
    """The reasons OpenSSL gives, without its tuple dressing."""
    reasons = [
        entry[-1]
        for entry in (error.args[0] if error.args else [])
        if isinstance(entry, tuple) and entry
    ]
    return ", ".join(str(r) for r in reasons if r) or "handshake failed"
