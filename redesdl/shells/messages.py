"""Requests and replies over a framed connection, and refusals by rule.

L{MessageProtocol} calls ``msg_<type>`` with each typed message it receives
(L{redesdl.protocol.wire}), turns a L{ProtocolError} raised there into a
typed ``error`` reply, and matches replies to the requests it sent by their
``id``.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from redesdl.protocol.complaints import COMPLAINTS, peer_host
from redesdl.protocol.errors import ProtocolError, RemoteError
from redesdl.protocol.wire import Error, Message
from redesdl.shells.framing import FrameProtocol
from redesdl.shells.tracking import TrackingFactory

#: Requests refused on one connection before the peer is taken for broken.
MAX_REFUSALS = 32
#: Refusals a well-behaved peer meets in normal operation.
ROUTINE_REFUSALS = frozenset({"not_found", "no_source", "not_ready", "busy"})


class MessageProtocol(FrameProtocol):
    """Dispatch messages to ``msg_<type>`` methods; match replies to requests."""

    factory: Any = None
    _refusals = 0
    #: Why the peer turned us away (a server over its caps says ``busy``
    #: before it hangs up), if it did: what waits fails with that.
    turned_away: RemoteError | None = None

    def connectionMade(self) -> None:
        self._pending: dict[int, Deferred[Any]] = {}
        self._ids = itertools.count(1)
        if isinstance(self.factory, TrackingFactory):
            self.factory.connected(self)

    def allocateId(self) -> int:
        """A request id not used before on this connection."""
        return next(self._ids)

    def request(self, message: Message) -> Deferred[Any]:
        """Send C{message} (it carries an id from L{allocateId}); fire with the
        reply bearing that id.

        An ``error`` reply errbacks with L{RemoteError}; losing the connection
        errbacks every request still waiting.
        """
        request_id: int = message.id  # type: ignore[attr-defined]
        waiting: Deferred[Any] = Deferred()
        self._pending[request_id] = waiting
        self.sendMessage(message)
        return waiting

    def messageReceived(self, message: Message) -> None:
        kind = message.TYPE
        request_id = getattr(message, "id", None)
        if isinstance(message, Error):
            if request_id in self._pending:
                self._pending.pop(request_id).errback(
                    RemoteError(message.code, message.message)
                )
            elif message.code == "busy":
                self.turned_away = RemoteError(message.code, message.message)
            elif hasattr(self, "msg_error"):
                self.msg_error(message)
            # Never answer an error with an error: two peers could ping-pong.
            return
        handler = getattr(self, "msg_" + kind, None)
        if handler is None:
            if request_id in self._pending:
                self._pending.pop(request_id).callback(message)
            else:
                self.refuse(
                    kind,
                    ProtocolError("unknown_type", f"unexpected message {kind!r}"),
                    request_id,
                )
            return
        self._handle(kind, handler, message, request_id)

    def _handle(
        self, kind: str, handler: Any, message: Any, request_id: int | None
    ) -> None:
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
            internal = ProtocolError("internal", f"failed to handle {kind!r}")
            self.sendMessage(Error.of(internal, request_id))

    def messageRefused(
        self, kind: str, error: ProtocolError, request_id: int | None
    ) -> None:
        """A malformed reply fails its request; a malformed request is refused."""
        if kind == "error":
            return
        if request_id in self._pending:
            self._pending.pop(request_id).errback(error)
            return
        self.refuse(kind, error, request_id)

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
            self.complain_of_refusal(kind, error)
        self.sendMessage(Error.of(error, request_id))

    def closeSilent(self, seconds: float) -> None:
        """Hang up on a peer silent for C{seconds}; say so, rate-limited."""
        COMPLAINTS.complain(
            peer_host(self.transport),
            "closing {peer}: silent for {seconds} s",
            LogLevel.info,
            seconds=seconds,
        )
        self.transport.abortConnection()

    def takePending(self, request_id: Any) -> Deferred[Any] | None:
        """Remove and return the Deferred waiting for C{request_id}, if any."""
        return self._pending.pop(request_id, None)

    def connectionLost(self, reason: Failure) -> None:
        if isinstance(self.factory, TrackingFactory):
            self.factory.disconnected(self)
        if self.turned_away is not None and reason.check(
            ConnectionDone, ConnectionLost
        ):
            reason = Failure(self.turned_away)
        pending, self._pending = self._pending, {}
        for waiting in pending.values():
            waiting.errback(reason)
