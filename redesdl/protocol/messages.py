"""Message dispatch, request/reply matching and field validation.

A message is a JSON object with a ``type``. L{MessageProtocol} calls
``msg_<type>`` for each one, turns a L{ProtocolError} raised there into a
typed ``error`` reply, and matches replies to the requests it sent by their
``id``. The field readers below are the only way handlers read a message, so
every string, count and list taken from a peer is checked and bounded.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from redesdl.protocol.complaints import COMPLAINTS, peer_host
from redesdl.protocol.errors import ProtocolError, RemoteError
from redesdl.protocol.framing import FrameProtocol
from redesdl.protocol.tracking import TrackingFactory

PROTOCOL_VERSION = 1
MAX_STRING = 4096
#: Most file entries or names one ``files_added``/``files_removed`` may carry.
MAX_FILES_PER_MESSAGE = 256
#: Requests refused on one connection before the peer is taken for broken.
MAX_REFUSALS = 32
#: Refusals a well-behaved peer meets in normal operation.
ROUTINE_REFUSALS = frozenset({"not_found", "no_source", "not_ready", "busy"})
_SHA256 = re.compile(r"[0-9a-f]{64}")


def request_id_of(message: dict[str, Any]) -> int | None:
    """The C{id} a reply to C{message} should carry, if it has a usable one."""
    value = message.get("id")
    return value if type(value) is int else None


def text(message: dict[str, Any], key: str, *, max_length: int = MAX_STRING) -> str:
    value = message.get(key)
    if not isinstance(value, str) or len(value) > max_length:
        raise ProtocolError(
            "bad_request",
            f"{key!r} must be a string of at most {max_length} characters",
        )
    return value


def optional_text(message: dict[str, Any], key: str) -> str | None:
    return None if message.get(key) is None else text(message, key)


def count(message: dict[str, Any], key: str, *, maximum: int = 2**63 - 1) -> int:
    value = message.get(key)
    if type(value) is not int or not 0 <= value <= maximum:
        raise ProtocolError(
            "bad_request", f"{key!r} must be an integer in 0..{maximum}"
        )
    return value


def digest(message: dict[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ProtocolError("bad_request", f"{key!r} must be a lowercase SHA-256 hex")
    return value


def items(message: dict[str, Any], key: str, *, max_items: int) -> list[Any]:
    value = message.get(key)
    if not isinstance(value, list) or len(value) > max_items:
        raise ProtocolError(
            "bad_request", f"{key!r} must be a list of at most {max_items} items"
        )
    return value


def mapping(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError("bad_request", f"{key!r} must be an object")
    return value


class MessageProtocol(FrameProtocol):
    """Dispatch messages to ``msg_<type>`` methods; match replies to requests."""

    factory: Any = None
    _refusals = 0

    def connectionMade(self) -> None:
        self._pending: dict[int, Deferred[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        if isinstance(self.factory, TrackingFactory):
            self.factory.connected(self)

    def allocateId(self) -> int:
        """A request id not used before on this connection."""
        return next(self._ids)

    def request(
        self, message: dict[str, Any], request_id: int | None = None
    ) -> Deferred[dict[str, Any]]:
        """Send C{message} with an id; fire with the reply bearing that id.

        An ``error`` reply errbacks with L{RemoteError}; losing the connection
        errbacks every request still waiting.
        """
        if request_id is None:
            request_id = self.allocateId()
        waiting: Deferred[dict[str, Any]] = Deferred()
        self._pending[request_id] = waiting
        self.sendMessage({**message, "id": request_id})
        return waiting

    def messageReceived(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        handler = getattr(self, "msg_" + kind, None)
        request_id = request_id_of(message)
        if kind == "error" and request_id in self._pending:
            self._resolve(request_id, message)
            return
        if kind == "error" and handler is None:
            # Never answer an error with an error: two peers could ping-pong.
            return
        if handler is None:
            if request_id in self._pending:
                self._resolve(request_id, message)
            else:
                self.refuse(
                    kind,
                    ProtocolError(
                        "unknown_type", f"unknown message type {kind[:64]!r}"
                    ),
                    request_id,
                )
            return
        try:
            handler(message)
        except ProtocolError as e:
            self.refuse(kind, e, request_id)
        except Exception:
            self.log.failure(
                "failed to handle {kind} from {peer}",
                kind=kind,
                peer=self.transport.getPeer(),
            )
            self.sendMessage(
                ProtocolError("internal", f"failed to handle {kind!r}").to_message(
                    request_id
                )
            )

    def refuse(self, kind: str, error: ProtocolError, request_id: int | None) -> None:
        """Answer a request we will not act on; hang up on a peer that keeps at it.

        Codes that are part of normal life (a file not found, a queue that
        is full) are the peer's business and not logged.
        """
        if error.code not in ROUTINE_REFUSALS:
            self._refusals += 1
            if self._refusals > MAX_REFUSALS:
                self.protocolViolation(
                    ProtocolError("bad_request", f"{MAX_REFUSALS} requests refused")
                )
                return
            COMPLAINTS.complain(
                peer_host(self.transport),
                "refused {kind} from {peer}: {code}: {reason}",
                kind=kind[:64],
                code=error.code,
                reason=error.message,
            )
        self.sendMessage(error.to_message(request_id))

    def closeSilent(self, seconds: float) -> None:
        """Hang up on a peer silent for C{seconds}; say so, rate-limited."""
        COMPLAINTS.complain(
            peer_host(self.transport),
            "closing {peer}: silent for {seconds} s",
            LogLevel.info,
            seconds=seconds,
        )
        self.transport.abortConnection()

    def takePending(self, request_id: Any) -> Deferred[dict[str, Any]] | None:
        """Remove and return the Deferred waiting for C{request_id}, if any."""
        return self._pending.pop(request_id, None)

    def _resolve(self, request_id: int, message: dict[str, Any]) -> None:
        waiting = self._pending.pop(request_id)
        if message["type"] == "error":
            waiting.errback(RemoteError.from_message(message))
        else:
            waiting.callback(message)

    def connectionLost(self, reason: Failure) -> None:
        if isinstance(self.factory, TrackingFactory):
            self.factory.disconnected(self)
        pending, self._pending = self._pending, {}
        for waiting in pending.values():
            waiting.errback(reason)
