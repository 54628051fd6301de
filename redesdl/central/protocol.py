"""The central's end of every conversation: the Twisted shell of the session machine.

A connection's whole lifecycle (hello, the secondary's challenge, a client's
idle, queued and active states, the end) lives in
L{redesdl.machines.central_session}. L{CentralProtocol} only decodes typed
messages (L{redesdl.protocol.wire.CENTRAL_INBOUND}), calls the machine's
input for each, turns its timers and its connection's end into inputs, and
implements the machine's connection verbs. L{CentralFactory} holds what
every connection shares (L{redesdl.central.services.CentralServices}).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from redesdl.central.registry import run_at_once
from redesdl.central.services import SLOT_IDLE_TIMEOUT, CentralServices
from redesdl.central.stats import CentralStats
from redesdl.machines.central_session import INPUT_FOR_TYPE, MACHINE, SessionCore
from redesdl.protocol import wire
from redesdl.protocol.auth import ClusterSecret
from redesdl.protocol.complaints import COMPLAINTS, peer_host
from redesdl.protocol.errors import ProtocolError
from redesdl.shells.messages import MessageProtocol
from redesdl.shells.tracking import (
    DEFAULT_LIMITS,
    ConnectionLimits,
    TrackingFactory,
)

#: Why a connection's reading is held while our replies wait to be read.
UNREAD = "replies unread"


@implementer(IPushProducer)
class UnreadReplies:
    """Stop reading a peer's requests while our replies to it pile up unread.

    Registered as the transport's streaming producer: Twisted pauses it when
    more than its buffer (64 KiB) waits to be written and resumes it once all
    went out, so a peer that sends requests and never reads the replies costs
    one buffer, not a reply per request: the requests one read brought past
    that point wait, unanswered, until the replies are read. Its silence
    timer keeps running: a peer that reads nothing for that long is closed.
    """

    def __init__(self, protocol: CentralProtocol) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.hold_reading(UNREAD)

    def resumeProducing(self) -> None:
        self._protocol.release_reading(UNREAD)

    def stopProducing(self) -> None:
        pass


class CentralProtocol(MessageProtocol, TimeoutMixin):
    """One connection to the central, from a client or a secondary.

    The machine chooses the silence timeout of each state: the idle timeout
    for most, the heartbeat timeout for a registered secondary (a frozen
    process keeps its TCP connection open but stops talking), none for a
    client waiting in the admission queue.
    """

    maxFrameLength = 256 * 1024
    vocabulary = wire.CENTRAL_INBOUND
    factory: CentralFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        self._slot_timer: IDelayedCall | None = None
        #: The silence allowed once reading resumes, while it is paused.
        self._paused_silence: float | None = None
        self._reading_paused = False
        #: Why reading is held (the intake's queue, replies unread): it
        #: resumes once no reason is left.
        self._read_holds: set[str] = set()
        #: Requests read while replies were unread, acted on once they are.
        self._unanswered: deque[wire.Message] = deque()
        self.callLater = self.factory.clock.callLater
        #: The abort that ends a hang-up the peer leaves unfinished.
        self._cut_off: IDelayedCall | None = None
        self.core = SessionCore(self, self.factory)
        self.session = MACHINE(self.core)
        self.setTimeout(self.factory.idle_timeout)
        self.transport.registerProducer(UnreadReplies(self), True)

    # What the console and the trace lines show.
    @property
    def role(self) -> str | None:
        return self.core.role

    @property
    def peerName(self) -> str:
        return self.core.name

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)

    def messageReceived(self, message: wire.Message) -> None:
        if isinstance(message, wire.Error):
            # Never answer an error with an error: two peers could ping-pong.
            return
        if self._unanswered or UNREAD in self._read_holds:
            # The rest of what one read brought waits, as requests (a few
            # bytes each), not as the replies they would make.
            self._unanswered.append(message)
            return
        self._act_on(message)

    def _act_on(self, message: wire.Message) -> None:
        an_input = getattr(self.session, INPUT_FOR_TYPE[message.TYPE])
        try:
            an_input(message)
        except Exception:
            self.log.failure(
                "failed to handle {kind} from {peer}",
                kind=message.TYPE,
                peer=self.transport.getPeer(),
            )
            error = ProtocolError("internal", f"failed to handle {message.TYPE!r}")
            self.sendMessage(wire.Error.of(error, getattr(message, "id", None)))

    def timeoutConnection(self) -> None:
        self.session.silence()

    def connectionLost(self, reason: Failure) -> None:
        self.setTimeout(None)
        self.watch_slot(None)
        if self._cut_off is not None and self._cut_off.active():
            self._cut_off.cancel()
        super().connectionLost(reason)
        self.session.connection_lost()

    # -- the machine's connection verbs -------------------------------------

    def send(self, message: wire.Message) -> None:
        self.sendMessage(message)

    def hang_up(self, error: ProtocolError | None) -> None:
        if error is not None:
            self.sendMessage(wire.Error.of(error))
        self.loseConnection()

    def protocolViolation(self, error: ProtocolError) -> None:
        self.transport.unregisterProducer()
        super().protocolViolation(error)
        self._cut_off_after_grace()

    def loseConnection(self) -> None:
        """Close once everything is written: Twisted would wait for a
        registered producer to unregister, for ever if it were paused."""
        self.transport.unregisterProducer()
        self.transport.loseConnection()
        self._cut_off_after_grace()

    def _cut_off_after_grace(self) -> None:
        """Abort if the close has not ended within the factory's grace: over
        TLS it waits for the peer (its close_notify, or its handshake), and
        a closing session no longer watches for silence."""
        if self._cut_off is None:
            self._cut_off = self.callLater(self.factory.closeGrace, self.abort)

    def close_silent(self, seconds: float) -> None:
        self.closeSilent(seconds)

    def abort(self) -> None:
        self.transport.abortConnection()

    def watch_silence(self, seconds: float | None) -> None:
        if self._reading_paused:
            self._paused_silence = seconds
        else:
            self.setTimeout(seconds)

    def watch_slot(self, seconds: float | None) -> None:
        if self._slot_timer is not None and self._slot_timer.active():
            self._slot_timer.cancel()
        self._slot_timer = None
        if seconds is not None:
            self._slot_timer = self.factory.clock.callLater(
                seconds, self.session.slot_idle
            )

    def pause_reading(self) -> None:
        """Read nothing more for now; silence meanwhile is not the peer's."""
        self._reading_paused = True
        self._paused_silence = self.timeOut
        self.setTimeout(None)
        self.hold_reading("intake")

    def resume_reading(self) -> None:
        self._reading_paused = False
        self.setTimeout(self._paused_silence)
        self.release_reading("intake")

    def hold_reading(self, why: str) -> None:
        if not self._read_holds:
            self.transport.pauseProducing()
        self._read_holds.add(why)

    def release_reading(self, why: str) -> None:
        if why not in self._read_holds:
            return
        self._read_holds.discard(why)
        while self._unanswered and UNREAD not in self._read_holds:
            self._act_on(self._unanswered.popleft())
        if not self._read_holds and not self.transport.disconnecting:
            self.transport.resumeProducing()

    def peer_host(self) -> str:
        return str(getattr(self.transport.getPeer(), "host", ""))

    def complain(self, log_format: str, **fields: Any) -> None:
        COMPLAINTS.complain(peer_host(self.transport), log_format, **fields)


class CentralFactory(TrackingFactory, CentralServices):
    """Shared state behind every central connection."""

    protocol = CentralProtocol
    log = Logger()

    def startFactory(self) -> None:
        if self.secret is None:
            self.log.warn(
                "RUNNING OPEN: no --secret-file, so anyone who can reach this "
                "central can register a secondary and be offered to clients"
            )

    def __init__(
        self,
        clock: Any,
        stats: CentralStats,
        minSecondaries: int = 1,
        maxActive: int = 5,
        heartbeatTimeout: float = 15.0,
        idleTimeout: float = 60.0,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        secret: ClusterSecret | None = None,
        slotIdleTimeout: float = SLOT_IDLE_TIMEOUT,
        cooperate: Callable[[Iterator[None]], Any] = run_at_once,
    ) -> None:
        TrackingFactory.__init__(self, limits)
        CentralServices.__init__(
            self,
            clock,
            stats,
            min_secondaries=minSecondaries,
            max_active=maxActive,
            heartbeat_timeout=heartbeatTimeout,
            idle_timeout=idleTimeout,
            slot_idle_timeout=slotIdleTimeout,
            secret=secret,
            cooperate=cooperate,
        )
        self.heartbeatTimeout = heartbeatTimeout
        self.idleTimeout = idleTimeout
