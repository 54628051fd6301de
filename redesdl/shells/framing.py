"""The Twisted shell around the codec: bytes from the transport in, calls out.

L{FrameProtocol} feeds what the socket delivered to a
L{redesdl.protocol.codec.FrameDecoder} and turns each event into one call:
L{messageReceived} for a typed message, L{messageRefused} for a message with
a bad field or of a type this receiver does not know, L{rawDataReceived} and
L{rawDataFinished} for a chunk's payload, L{protocolViolation} when the
stream cannot be parsed any further. It decides nothing itself.
"""

from __future__ import annotations

from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from redesdl.protocol.codec import (
    ChunkData,
    ChunkEnd,
    FrameDecoder,
    FramingBroken,
    MessageReceived,
    MessageRefused,
    encode,
)
from redesdl.protocol.complaints import COMPLAINTS, peer_host
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import Error, Message, Vocabulary
from redesdl.trace import TRACER


class FrameProtocol(Protocol):
    """Decode frames into calls; send messages as frames.

    Subclasses set L{vocabulary} (the message types they accept) and
    L{maxFrameLength}, and implement L{messageReceived}; one that receives
    chunks also implements L{rawDataReceived} and L{rawDataFinished}.
    """

    log = Logger()

    #: Largest frame body accepted from the peer; a longer one is a violation.
    maxFrameLength = 64 * 1024
    #: The message types this receiver accepts from its peer.
    vocabulary: Vocabulary

    _decoder: FrameDecoder | None = None
    _broken = False

    def _frameDecoder(self) -> FrameDecoder:
        if self._decoder is None:
            self._decoder = FrameDecoder(self.vocabulary, self.maxFrameLength)
        return self._decoder

    def dataReceived(self, data: bytes) -> None:
        decoder = self._frameDecoder()
        if not self._broken and decoder.inside_payload(len(data)):
            self.rawDataReceived(memoryview(data))
            return
        for event in decoder.feed(data):
            if self._broken:
                return
            if isinstance(event, ChunkData):
                self.rawDataReceived(event.data)
            elif isinstance(event, MessageReceived):
                if TRACER.enabled:
                    TRACER.emit("<-", self.peerDescription(), event.message.to_wire())
                self.messageReceived(event.message)
            elif isinstance(event, ChunkEnd):
                self.rawDataFinished()
            elif isinstance(event, MessageRefused):
                self.messageRefused(event.kind, event.error, event.request_id)
            elif isinstance(event, FramingBroken):
                self.protocolViolation(event.error)

    def sendMessage(self, message: Message) -> None:
        """Send one message as a frame."""
        if TRACER.enabled:
            TRACER.emit("->", self.peerDescription(), message.to_wire())
        self.transport.write(encode(message))

    def peerDescription(self) -> str:
        """Who is at the other end, for trace lines and logs."""
        peer = self.transport.getPeer()
        address = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        name = getattr(self, "peerName", None) or getattr(self, "sourceName", None)
        return f"{name}@{address}" if name else address

    def protocolViolation(self, error: ProtocolError) -> None:
        """The peer broke the framing or the rules: tell it why, then hang up."""
        if self._broken:
            return
        self._broken = True
        COMPLAINTS.complain(
            peer_host(self.transport),
            "closing connection to {peer}: {code}: {reason}",
            code=error.code,
            reason=error.message,
        )
        self.sendMessage(Error.of(error))
        self.transport.loseConnection()

    def complain_of_refusal(self, kind: str, error: ProtocolError) -> None:
        """One log line (rate-limited per address) about a refused request."""
        COMPLAINTS.complain(
            peer_host(self.transport),
            "refused {kind} from {peer}: {code}: {reason}",
            kind=kind[:64],
            code=error.code,
            reason=error.message,
        )

    def messageReceived(self, message: Message) -> None:
        raise NotImplementedError

    def messageRefused(
        self, kind: str, error: ProtocolError, request_id: int | None
    ) -> None:
        """A message with a bad field or of an unknown type: refuse it."""
        self.protocolViolation(error)

    def rawDataReceived(self, data: memoryview) -> None:
        raise NotImplementedError

    def rawDataFinished(self) -> None:
        raise NotImplementedError
