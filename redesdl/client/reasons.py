"""Short, human phrasings of the exceptions a download meets."""

from __future__ import annotations

from twisted.internet import error as net_error

from redesdl.client.central import CentralBusyError, CentralSilentError
from redesdl.client.errors import UserError
from redesdl.protocol.errors import RemoteError
from redesdl.transfer.errors import DownloadError, IntegrityError, NoLiveSourceError
from redesdl.transfer.reasons import TLSError, describe_error


def explain(error: BaseException, central: str, file: str | None) -> str:
    """One line for a person explaining why a command failed."""
    if isinstance(error, UserError | DownloadError):
        return str(error)
    if isinstance(error, RemoteError):
        if error.code == "not_found" and file is not None:
            return f"no file named {file!r} on the central (see 'redesdl list')"
        return error.message or f"the central refused: {error.code}"
    if isinstance(error, net_error.ConnectError | net_error.DNSLookupError | TLSError):
        return f"cannot reach the central at {central}: {describe_error(error)}"
    if isinstance(error, net_error.ConnectionDone | net_error.ConnectionLost):
        return f"lost the connection to the central at {central}"
    return f"unexpected error: {error!r} (run with --debug for details)"


#: Exit statuses of ``redesdl``, documented in the README.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CENTRAL_UNREACHABLE = 3
EXIT_NO_SOURCE = 4
EXIT_INTEGRITY = 5
EXIT_INTERRUPTED = 130


def exit_status(error: BaseException) -> int:
    """The exit status for a command that failed with C{error}."""
    if isinstance(error, IntegrityError):
        return EXIT_INTEGRITY
    if isinstance(error, NoLiveSourceError) or (
        isinstance(error, RemoteError) and error.code == "no_source"
    ):
        return EXIT_NO_SOURCE
    if isinstance(
        error,
        CentralSilentError
        | CentralBusyError
        | net_error.ConnectError
        | net_error.DNSLookupError
        | TLSError
        | net_error.ConnectionDone
        | net_error.ConnectionLost,
    ):
        return EXIT_CENTRAL_UNREACHABLE
    return EXIT_FAILURE
