"""The wire format, with no transport: bytes in, events out; messages in, bytes out.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON: one
object whose ``type`` names the message. A ``chunk`` header is followed by
exactly ``length`` raw bytes that belong to no frame. L{FrameDecoder.feed}
takes whatever the socket delivered and returns what it completed, in order,
the way h11's ``receive_data``/``next_event`` do:

- L{MessageReceived}: a typed message of the receiver's vocabulary;
- L{MessageRefused}: a well-framed message with a bad field or an unknown
  type, to be answered with a typed error (the connection can go on);
- L{ChunkData} and L{ChunkEnd}: the raw bytes after a ``chunk`` header,
  as memoryview slices of the input (never copied or accumulated);
- L{FramingBroken}: the stream cannot be parsed any further (``bad_frame`` or
  ``too_large``); it is the last event the decoder ever returns.

Nothing here logs, writes or knows a reactor, so every byte sequence can be
tried on it in a test.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.fields import request_id
from redesdl.protocol.wire import (
    ChunkHeader,
    Message,
    Vocabulary,
    compact_json,
    parse,
)

_LENGTH = struct.Struct("!I")
_EMPTY = memoryview(b"")
#: Deepest nesting of arrays and objects any message needs, with room to spare.
MAX_DEPTH = 8


@dataclass(frozen=True)
class MessageReceived:
    message: Message


@dataclass(frozen=True)
class MessageRefused:
    """A message we will not act on: C{error} goes back, with C{request_id}."""

    kind: str
    error: ProtocolError
    request_id: int | None


@dataclass(frozen=True)
class ChunkData:
    data: memoryview


@dataclass(frozen=True)
class ChunkEnd:
    header: ChunkHeader


@dataclass(frozen=True)
class FramingBroken:
    error: ProtocolError


Event = MessageReceived | MessageRefused | ChunkData | ChunkEnd | FramingBroken


def encode(message: Message | dict[str, Any]) -> bytes:
    """One frame holding C{message}.

    Non-ASCII text goes out as JSON escapes, so no string (not even one
    holding a lone surrogate) can make encoding fail.
    """
    data = (
        message.encode_body() if isinstance(message, Message) else compact_json(message)
    )
    return _LENGTH.pack(len(data)) + data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(value: Any) -> bool:
    """True if anything lies over L{MAX_DEPTH} containers deep, level by level."""
    level = [value] if type(value) is dict or type(value) is list else []
    for _ in range(MAX_DEPTH):
        inner = []
        for container in level:
            items = container.values() if type(container) is dict else container
            inner += [v for v in items if type(v) is dict or type(v) is list]
        if not inner:
            return False
        level = inner
    return any(level)


def decode_body(body: bytes) -> dict[str, Any]:
    """The JSON object of one frame, or a ``bad_frame`` L{ProtocolError}."""
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError("bad_frame", f"frame is not JSON: {e}") from None
    except RecursionError:
        raise ProtocolError("bad_frame", "frame is nested too deeply") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ProtocolError("bad_frame", "frame is not an object with a 'type'")
    if _too_deep(value):
        raise ProtocolError("bad_frame", f"frame is nested over {MAX_DEPTH} deep")
    return value


class FrameDecoder:
    """Turn one direction of a connection into events, whatever the splits."""

    def __init__(self, vocabulary: Vocabulary, max_frame_length: int) -> None:
        self._vocabulary = vocabulary
        self._max_frame_length = max_frame_length
        #: The start of a frame split across reads (never chunk bytes).
        self._buffer = bytearray()
        self._raw_remaining = 0
        self._header: ChunkHeader | None = None
        self.broken = False

    @property
    def in_chunk(self) -> bool:
        """True while the bytes fed belong to a chunk's payload."""
        return self._raw_remaining > 0

    def inside_payload(self, size: int) -> bool:
        """True, with C{size} bytes counted as fed, if the next C{size} bytes
        are payload that does not end the chunk.

        The common case of a download (most reads fall inside a chunk),
        decided without building events: the caller hands those bytes on as
        one L{ChunkData}. False changes nothing: then call L{feed}.
        """
        if self._raw_remaining > size:
            self._raw_remaining -= size
            return True
        return False

    def feed(self, data: bytes | memoryview) -> list[Event]:
        events: list[Event] = []
        view = memoryview(data)
        while view and not self.broken:
            if self._raw_remaining:
                view = self._feed_raw(view, events)
            else:
                view = self._feed_frames(view, events)
        return events

    def _feed_raw(self, view: memoryview, events: list[Event]) -> memoryview:
        taken = min(len(view), self._raw_remaining)
        self._raw_remaining -= taken
        events.append(ChunkData(view[:taken]))
        if not self._raw_remaining:
            assert self._header is not None
            events.append(ChunkEnd(self._header))
            self._header = None
        return view[taken:]

    def _feed_frames(self, view: memoryview, events: list[Event]) -> memoryview:
        """Decode every whole frame; return the bytes that follow a chunk header.

        Only frame bytes are copied (a frame split across reads is gathered
        in a small bytearray); the raw bytes after a header stay a view.
        """
        while view and not self._raw_remaining and not self.broken:
            if self._buffer:
                view = self._complete_frame(view, events)
                continue
            if len(view) < _LENGTH.size:
                self._buffer = bytearray(view)
                break
            (length,) = _LENGTH.unpack_from(view)
            if self._too_long(length, events):
                break
            end = _LENGTH.size + length
            if len(view) < end:
                self._buffer = bytearray(view)
                break
            self._decode(view[_LENGTH.size : end].tobytes(), events)
            view = view[end:]
        if self.broken or not self._raw_remaining:
            return _EMPTY
        return view

    def _complete_frame(self, view: memoryview, events: list[Event]) -> memoryview:
        """Add to the partial frame what it lacks; decode it once it is whole."""
        buffer = self._buffer
        if len(buffer) < _LENGTH.size:
            taken = min(_LENGTH.size - len(buffer), len(view))
            buffer += view[:taken]
            view = view[taken:]
            if len(buffer) < _LENGTH.size:
                return view
        (length,) = _LENGTH.unpack_from(buffer)
        if self._too_long(length, events):
            self._buffer = bytearray()
            return _EMPTY
        taken = min(_LENGTH.size + length - len(buffer), len(view))
        buffer += view[:taken]
        if len(buffer) == _LENGTH.size + length:
            self._buffer = bytearray()
            self._decode(bytes(buffer[_LENGTH.size :]), events)
        return view[taken:]

    def _too_long(self, length: int, events: list[Event]) -> bool:
        if length <= self._max_frame_length:
            return False
        self._break(
            events,
            ProtocolError(
                "too_large",
                f"frame of {length} bytes exceeds {self._max_frame_length}"
                + _looks_like_text(length),
            ),
        )
        return True

    def _decode(self, frame: bytes, events: list[Event]) -> None:
        try:
            body = decode_body(frame)
        except ProtocolError as e:
            self._break(events, e)
            return
        kind = body["type"]
        if kind == ChunkHeader.TYPE:
            if kind not in self._vocabulary:
                # Its payload would follow unframed: nothing after can be read.
                self._break(events, ProtocolError("bad_frame", "unexpected chunk"))
            else:
                self._start_chunk(body, events)
            return
        try:
            message = parse(body, self._vocabulary)
        except ProtocolError as e:
            events.append(MessageRefused(kind[:64], e, request_id(body)))
            return
        events.append(MessageReceived(message))

    def _start_chunk(self, body: dict[str, Any], events: list[Event]) -> None:
        """A chunk header frames the bytes after it: a bad one breaks the stream."""
        try:
            header = ChunkHeader.parse(body)
        except ProtocolError as e:
            self._break(events, ProtocolError("bad_frame", f"chunk header: {e}"))
            return
        events.append(MessageReceived(header))
        self._header = header
        self._raw_remaining = header.length

    def _break(self, events: list[Event], error: ProtocolError) -> None:
        self.broken = True
        events.append(FramingBroken(error))


def _looks_like_text(length: int) -> str:
    """A hint when a length prefix is really text: a peer speaking another
    protocol (``HTTP``, ``SSH-``, a TLS record's ``\\x16\\x03`` is not text)."""
    prefix = length.to_bytes(4, "big")
    if all(32 < byte < 127 for byte in prefix):
        return f" (it starts {prefix.decode()!r}: is the peer speaking redesdl?)"
    return ""
