"""Frames and raw payloads survive any split of the byte stream."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from redesdl.protocol.framing import FrameProtocol, encode_frame


class Recorder(FrameProtocol):
    """Record messages; a ``blob`` header is followed by ``length`` raw bytes."""

    maxFrameLength = 1024

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._raw = bytearray()

    def messageReceived(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        if message["type"] == "blob":
            self.expectRaw(message["length"])

    def rawDataReceived(self, data: memoryview) -> None:
        self._raw += data

    def rawDataFinished(self) -> None:
        self.events.append(bytes(self._raw))
        self._raw = bytearray()


def connected() -> tuple[Recorder, StringTransport]:
    protocol, transport = Recorder(), StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


STREAM = (
    encode_frame({"type": "a", "n": 1})
    + encode_frame({"type": "blob", "length": 5})
    + b"hello"
    + encode_frame({"type": "b", "text": "ñ"})
    + encode_frame({"type": "blob", "length": 3})
    + b"xyz"
)
EXPECTED = [
    {"type": "a", "n": 1},
    {"type": "blob", "length": 5},
    b"hello",
    {"type": "b", "text": "ñ"},
    {"type": "blob", "length": 3},
    b"xyz",
]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_yields_the_same_messages(cuts: list[int]) -> None:
    protocol, _ = connected()
    bounds = [0, *sorted(cuts), len(STREAM)]
    for start, end in itertools.pairwise(bounds):
        protocol.dataReceived(STREAM[start:end])
    assert protocol.events == EXPECTED


def test_all_at_once() -> None:
    protocol, _ = connected()
    protocol.dataReceived(STREAM)
    assert protocol.events == EXPECTED


def test_oversized_frame_gets_a_typed_error_and_a_hang_up() -> None:
    protocol, transport = connected()
    protocol.dataReceived(b"\x00\x01\x00\x00" + b"x" * 10)
    assert transport.disconnecting
    reply = json.loads(transport.value()[4:])
    assert reply["type"] == "error" and reply["code"] == "too_large"
    assert protocol.events == []


def test_garbage_gets_bad_frame_and_nothing_after_it_is_parsed() -> None:
    protocol, transport = connected()
    protocol.dataReceived(b"\x00\x00\x00\x03abc" + encode_frame({"type": "a"}))
    assert json.loads(transport.value()[4:])["code"] == "bad_frame"
    assert transport.disconnecting
    assert protocol.events == []


def test_frame_without_type_is_refused() -> None:
    protocol, transport = connected()
    protocol.dataReceived(b"\x00\x00\x00\x02[]")
    assert json.loads(transport.value()[4:])["code"] == "bad_frame"
