"""Typed errors that cross the wire, so no peer ever sees a traceback.

A request that cannot be served is answered with an ``error`` message whose
``code`` is one of L{ERROR_CODES}; the receiving side turns it back into a
L{RemoteError}. Both sides use L{ProtocolError} for "the peer sent something
we will not act on".
"""

from __future__ import annotations

from redesdl.printable import printable

#: Every code an ``error`` message may carry, with what it means.
ERROR_CODES = {
    "bad_frame": "the frame was not a JSON object with a type (connection closed)",
    "too_large": "the frame exceeded the receiver's limit (connection closed)",
    "bad_request": "a field is missing, of the wrong type or out of range",
    "unknown_type": "the receiver does not know this message type",
    "version": "the peer speaks an incompatible protocol version",
    "hello_first": "a message other than hello arrived before hello",
    "forbidden": "this role may not send this message",
    "not_found": "no such file",
    "no_source": "the file exists but no live secondary holds it",
    "not_ready": "fewer secondaries are registered than the central requires",
    "name_taken": "another secondary already registered this name",
    "not_registered": "the central does not know this secondary: register again",
    "busy": "too many requests queued on this connection, or too many connections",
    "unauthenticated": "the peer did not prove it holds the cluster secret",
    "client_name_taken": "another client's token owns this client name",
    "ticket_required": "this secondary serves only clients with a download ticket",
    "ticket_invalid": "the ticket was not issued for this file and client",
    "ticket_expired": "the ticket has expired: locate the file again for a new one",
    "slot_expired": "the central took a download slot back: no locate of its file "
    "for too long (the reply carries the admit's id)",
    "internal": "the receiver failed to handle the request (it logged why)",
}


class ProtocolError(Exception):
    """A message we refuse, with the code and text to send back."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RemoteError(Exception):
    """The peer answered a request with an ``error`` message.

    Its text is the peer's: escaped here, once, so it can be printed.
    """

    def __init__(self, code: str, message: str) -> None:
        message = printable(message)
        super().__init__(message)
        self.code = printable(code, 64)
        self.message = message
