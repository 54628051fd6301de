"""The pure codec: any split of the stream, every malformed frame, every message."""

from __future__ import annotations

import itertools
import json
import struct

from hypothesis import given
from hypothesis import strategies as st

from redesdl.manifest import FileInfo
from redesdl.protocol.codec import (
    ChunkData,
    ChunkEnd,
    FrameDecoder,
    FramingBroken,
    MessageReceived,
    MessageRefused,
    encode,
)
from redesdl.protocol.sources import SourceAddress
from redesdl.protocol.wire import (
    CENTRAL_INBOUND,
    CHUNK_SERVER_INBOUND,
    DOWNLOADER_FROM_SERVER,
    Admit,
    ChunkHeader,
    Located,
    Ping,
    Replicate,
    ServerWelcome,
    Ticket,
)

SHA = "ab" * 32


def frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


STREAM = (
    encode(ServerWelcome(1, "s1"))
    + encode(ChunkHeader(2, 0, 5))
    + b"hello"
    + encode(Ping(3))
    + encode(ChunkHeader(4, 1, 3))
    + b"xyz"
)


def replay(events: list) -> list:
    """What a receiver saw: messages, and each chunk's bytes joined."""
    seen: list = []
    payload = bytearray()
    for event in events:
        if isinstance(event, MessageReceived):
            seen.append(event.message)
        elif isinstance(event, ChunkData):
            payload += event.data
        elif isinstance(event, ChunkEnd):
            seen.append(bytes(payload))
            payload.clear()
        else:
            seen.append(event)
    return seen


EXPECTED = [
    ServerWelcome(1, "s1"),
    ChunkHeader(2, 0, 5),
    b"hello",
    Ping(3),
    ChunkHeader(4, 1, 3),
    b"xyz",
]


def downloader() -> FrameDecoder:
    vocabulary = {**DOWNLOADER_FROM_SERVER, "ping": Ping.parse}
    return FrameDecoder(vocabulary, 1024)


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_yields_the_same_events(cuts: list[int]) -> None:
    decoder = downloader()
    bounds = [0, *sorted(cuts), len(STREAM)]
    events = []
    for start, end in itertools.pairwise(bounds):
        events += decoder.feed(STREAM[start:end])
    assert replay(events) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_with_the_payload_shortcut_yields_the_same_events(
    cuts: list[int],
) -> None:
    """What a receiver does: a piece inside a chunk skips the events."""
    decoder = downloader()
    bounds = [0, *sorted(cuts), len(STREAM)]
    events: list = []
    shortcuts = 0
    for start, end in itertools.pairwise(bounds):
        piece = STREAM[start:end]
        if decoder.inside_payload(len(piece)):
            shortcuts += 1
            events.append(ChunkData(memoryview(piece)))
        else:
            events += decoder.feed(piece)
    assert replay(events) == EXPECTED
    assert shortcuts <= len(bounds) - 1


def test_the_payload_shortcut_never_takes_the_end_of_a_chunk() -> None:
    decoder = downloader()
    decoder.feed(encode(ChunkHeader(2, 0, 5)))
    assert decoder.inside_payload(4)
    assert not decoder.inside_payload(1), "the last byte ends the chunk"
    assert replay(decoder.feed(b"o")) == [b"o"]
    assert not decoder.inside_payload(0), "between frames"


def test_oversized_frame_breaks_the_stream_for_good() -> None:
    decoder = downloader()
    events = decoder.feed(b"\x00\x01\x00\x00" + b"x" * 10)
    assert [type(e) for e in events] == [FramingBroken]
    assert events[0].error.code == "too_large"
    assert decoder.feed(encode(Ping(1))) == []


def test_garbage_is_bad_frame_and_nothing_after_it_is_parsed() -> None:
    events = downloader().feed(frame(b"abc") + encode(Ping(1)))
    assert [type(e) for e in events] == [FramingBroken]
    assert events[0].error.code == "bad_frame"


def test_deep_nesting_is_bad_frame_not_a_recursion_error() -> None:
    for depth in (9, 20_000):
        body = b'{"type":"ping","id":1,"x":' + b"[" * depth + b"]" * depth + b"}"
        events = FrameDecoder(CENTRAL_INBOUND, 1 << 20).feed(frame(body))
        assert [type(e) for e in events] == [FramingBroken]
        assert events[0].error.code == "bad_frame"


def test_non_json_constants_and_huge_numbers_are_bad_frames() -> None:
    for body in (
        b'{"type":"ping","id":NaN}',
        b'{"type":"ping","id":' + b"9" * 5000 + b"}",
    ):
        events = FrameDecoder(CENTRAL_INBOUND, 1 << 20).feed(frame(body))
        assert [e.error.code for e in events] == ["bad_frame"]


def test_lone_surrogate_is_a_bad_request_naming_the_field() -> None:
    body = b'{"type":"admit","id":4,"name":"a\\ud800"}'
    (event,) = FrameDecoder(CENTRAL_INBOUND, 1024).feed(frame(body))
    assert isinstance(event, MessageRefused)
    assert (event.kind, event.error.code, event.request_id) == (
        "admit",
        "bad_request",
        4,
    )
    assert "'name'" in event.error.message


def test_unknown_type_is_refused_and_the_stream_goes_on() -> None:
    events = FrameDecoder(CHUNK_SERVER_INBOUND, 1024).feed(
        encode({"type": "admit", "id": 9, "name": "x"}) + encode(Ping(2))
    )
    assert isinstance(events[0], MessageRefused)
    assert events[0].error.code == "unknown_type" and events[0].request_id == 9
    assert events[1] == MessageReceived(Ping(2))


def test_a_chunk_to_a_receiver_that_takes_none_breaks_the_stream() -> None:
    events = FrameDecoder(CHUNK_SERVER_INBOUND, 1024).feed(
        encode(ChunkHeader(1, 0, 3)) + b"abc"
    )
    assert [type(e) for e in events] == [FramingBroken]


def test_a_malformed_chunk_header_breaks_the_stream() -> None:
    for header in (
        {"type": "chunk", "id": 1, "index": 0, "length": "3"},
        {"type": "chunk", "id": 1, "index": 0, "length": 0},
        {"type": "chunk", "id": 1, "length": 3},
    ):
        events = downloader().feed(encode(header) + b"abc")
        assert [type(e) for e in events] == [FramingBroken], header


def test_bad_field_names_the_nested_field() -> None:
    located = Located(1, FileInfo("a", 1, SHA, SHA), (SourceAddress("s", "h", 1),))
    body = located.to_wire()
    body["sources"][0]["port"] = "x"
    decoder = FrameDecoder({"located": Located.parse}, 4096)
    (event,) = decoder.feed(encode(body))
    assert isinstance(event, MessageRefused)
    assert "sources[0]" in event.error.message and "'port'" in event.error.message


def test_a_source_name_or_host_that_is_not_printable_is_refused() -> None:
    """A rogue central's source names reach every downloader's terminal."""
    located = Located(1, FileInfo("a", 1, SHA, SHA), (SourceAddress("s", "h", 1),))
    for field, value in (
        ("name", "\x1b]0;pwned\x07"),
        ("name", "s\u202e1"),
        ("host", "h\x9b2J"),
    ):
        body = located.to_wire()
        body["sources"][0][field] = value
        (event,) = FrameDecoder({"located": Located.parse}, 4096).feed(encode(body))
        assert isinstance(event, MessageRefused), (field, value)
        assert event.error.code == "bad_request"
        assert "unprintable" in event.error.message
        assert value not in event.error.message


def test_two_sources_with_one_name_are_refused() -> None:
    """A download keeps one connection and one record per source name."""
    twins = (SourceAddress("s", "h", 1), SourceAddress("s", "h2", 2))
    for message, parse in (
        (Located(1, FileInfo("a", 1, SHA, SHA), twins), Located.parse),
        (Replicate(FileInfo("a", 1, SHA, SHA), twins), Replicate.parse),
    ):
        decoder = FrameDecoder({message.TYPE: parse}, 4096)
        (event,) = decoder.feed(encode(message))
        assert isinstance(event, MessageRefused)
        assert event.error.code == "bad_request"
        assert event.error.message == "two sources named 's'"


@given(st.text(max_size=50))
def test_encode_never_raises_and_round_trips_valid_text(name: str) -> None:
    data = encode(Admit(1, name))
    assert json.loads(data[4:])["name"] == name


@given(st.integers(min_value=0, max_value=2**40), st.text(max_size=20))
def test_typed_messages_round_trip(expires: int, mac: str) -> None:
    message = Located(
        7,
        FileInfo("dir/a.mp4", 10, SHA, SHA),
        (SourceAddress("s1", "127.0.0.1", 7101),),
        Ticket(expires, mac.encode("utf-8", "replace").decode()),
    )
    (event,) = FrameDecoder({"located": Located.parse}, 4096).feed(encode(message))
    assert event == MessageReceived(message)


@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    for vocabulary in (CENTRAL_INBOUND, CHUNK_SERVER_INBOUND, DOWNLOADER_FROM_SERVER):
        FrameDecoder(vocabulary, 128).feed(data)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    [
        "id",
        "name",
        "token",
        "role",
        "version",
        "secondary_id",
        "boot",
        "port",
        "advertise",
        "nonce",
        "proof",
        "after",
        "ok",
        "size",
        "bytes_fetched",
        "reason",
        "sha256",
        "source",
        "files",
        "names",
        "served",
        "file",
        "sources",
        "ticket",
        "position",
        "queued_seconds",
        "more",
        "manifest",
        "index",
        "length",
        "code",
        "message",
        "chunks",
        "expires",
        "mac",
        "root",
        "client",
    ]
)
VOCABULARIES = [CENTRAL_INBOUND, CHUNK_SERVER_INBOUND, DOWNLOADER_FROM_SERVER]


@given(
    st.sampled_from(VOCABULARIES).flatmap(
        lambda v: st.tuples(st.just(v), st.sampled_from(sorted(v)))
    ),
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=8),
)
def test_any_fields_of_any_type_give_a_message_or_a_refusal(
    receiver: tuple, fields: dict
) -> None:
    vocabulary, kind = receiver
    events = FrameDecoder(vocabulary, 1 << 16).feed(
        encode({**fields, "type": kind, "version": 1})
    )
    assert events, "every frame yields an event"
    for event in events:
        assert isinstance(
            event,
            MessageReceived | MessageRefused | FramingBroken | ChunkData | ChunkEnd,
        )
        if isinstance(event, MessageReceived):
            # What was accepted can be sent back out unchanged.
            again = FrameDecoder(vocabulary, 1 << 16).feed(encode(event.message))
            assert again[0] == event


def test_chunk_bytes_are_views_of_the_input_never_copies() -> None:
    header = encode(ChunkHeader(2, 0, 64 * 1024))
    payload = bytes(range(256)) * 256
    # The header split in two: only its own bytes are gathered.
    received = header[:3], header[3:] + payload[:1000], payload[1000:]
    decoder = downloader()
    views = []
    for data in received:
        views += [e.data for e in decoder.feed(data) if isinstance(e, ChunkData)]
    assert [view.obj for view in views] == [received[1], received[2]]
    assert b"".join(views) == payload


def test_a_peer_speaking_another_protocol_is_told_apart() -> None:
    """An HTTP server taken for a central was 'frame of 1213486160 bytes'."""
    (event,) = FrameDecoder(CENTRAL_INBOUND, 4096).feed(b"HTTP/1.1 400 Bad Request")
    assert isinstance(event, FramingBroken)
    assert event.error.message == (
        "frame of 1213486160 bytes exceeds 4096 (it starts 'HTTP': is the peer "
        "speaking redesdl?)"
    )
    (event,) = FrameDecoder(CENTRAL_INBOUND, 4096).feed(b"\x16\x03\x01\x02")
    assert event.error.message == "frame of 369295618 bytes exceeds 4096"
