"""Length-prefixed JSON frames, optionally followed by raw bulk bytes.

Every redesdl conversation uses one framing: a 4-byte big-endian length, then
that many bytes of UTF-8 JSON holding one object whose ``type`` field names
the message. A message that carries bulk data (a chunk) is such a header frame
followed by exactly ``length`` raw bytes. Raw bytes are handed to
``rawDataReceived`` as memoryview slices of what the socket delivered, never
accumulated in a buffer, so a receiver can ``os.pwrite`` them as they arrive.

This is ``Int32StringReceiver`` plus a raw mode; ``Int32StringReceiver`` has no
raw mode and re-copies its buffer on every read, which halves bulk throughput.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from redesdl.protocol.complaints import COMPLAINTS, peer_host
from redesdl.protocol.errors import ProtocolError
from redesdl.trace import TRACER

_LENGTH = struct.Struct("!I")
_EMPTY = memoryview(b"")


def encode_frame(message: dict[str, Any]) -> bytes:
    """Serialize one message as a length-prefixed frame."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return _LENGTH.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    """Parse one frame body, raising L{ProtocolError} unless it is a message."""
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError("bad_frame", f"frame is not JSON: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("bad_frame", "frame is not an object with a 'type'")
    return message


class FrameProtocol(Protocol):
    """Parse frames into messages; switch to raw mode for bulk payloads.

    Subclasses implement L{messageReceived} and, if they call L{expectRaw},
    L{rawDataReceived} and L{rawDataFinished}.
    """

    log = Logger()

    #: Largest frame body accepted from the peer; a longer one is a violation.
    maxFrameLength = 64 * 1024

    _buffer = b""
    _rawRemaining = 0
    _broken = False

    def dataReceived(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._broken:
            if self._rawRemaining:
                view = self._feedRaw(view)
            else:
                view = self._feedFrames(view)

    def _feedRaw(self, view: memoryview) -> memoryview:
        taken = min(len(view), self._rawRemaining)
        self._rawRemaining -= taken
        self.rawDataReceived(view[:taken])
        if self._rawRemaining == 0 and not self._broken:
            self.rawDataFinished()
        return view[taken:]

    def _feedFrames(self, view: memoryview) -> memoryview:
        """Dispatch every whole frame; return bytes that belong to raw mode."""
        buffer = self._buffer + view.tobytes() if self._buffer else view.tobytes()
        offset = 0
        while not self._rawRemaining and not self._broken:
            if len(buffer) - offset < _LENGTH.size:
                break
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if length > self.maxFrameLength:
                self.protocolViolation(
                    ProtocolError(
                        "too_large",
                        f"frame of {length} bytes exceeds {self.maxFrameLength}",
                    )
                )
                return _EMPTY
            end = offset + _LENGTH.size + length
            if len(buffer) < end:
                break
            body = buffer[offset + _LENGTH.size : end]
            offset = end
            self._dispatch(body)
        if self._rawRemaining and not self._broken:
            self._buffer = b""
            return memoryview(buffer)[offset:]
        self._buffer = buffer[offset:]
        return _EMPTY

    def _dispatch(self, body: bytes) -> None:
        try:
            message = decode_body(body)
        except ProtocolError as e:
            self.protocolViolation(e)
            return
        if TRACER.enabled:
            TRACER.emit("<-", self.peerDescription(), message)
        self.messageReceived(message)

    def sendMessage(self, message: dict[str, Any]) -> None:
        """Send one message as a frame."""
        if TRACER.enabled:
            TRACER.emit("->", self.peerDescription(), message)
        self.transport.write(encode_frame(message))

    def peerDescription(self) -> str:
        """Who is at the other end, for trace lines and logs."""
        peer = self.transport.getPeer()
        address = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        name = getattr(self, "peerName", None) or getattr(self, "sourceName", None)
        return f"{name}@{address}" if name else address

    def expectRaw(self, length: int) -> None:
        """Deliver the next C{length} (> 0) bytes to L{rawDataReceived}."""
        assert length > 0, "a zero-length payload needs no raw mode"
        self._rawRemaining = length

    def protocolViolation(self, error: ProtocolError) -> None:
        """The peer broke the framing: tell it why, then hang up."""
        self._broken = True
        COMPLAINTS.complain(
            peer_host(self.transport),
            "closing connection to {peer}: {code}: {reason}",
            code=error.code,
            reason=error.message,
        )
        self.sendMessage(error.to_message())
        self.transport.loseConnection()

    def messageReceived(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def rawDataReceived(self, data: memoryview) -> None:
        raise NotImplementedError

    def rawDataFinished(self) -> None:
        raise NotImplementedError
