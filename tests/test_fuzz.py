"""Every decoder, fed hostile input by hypothesis: typed errors, never a crash.

A handler that raises anything but L{ProtocolError} answers ``internal`` and
logs a traceback; both count as failures here (the suite's fixture fails a
test that logs a traceback), so these tests find every field a handler reads
without checking it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from redesdl.client.central import CentralConnection
from redesdl.manifest import FileInfo, Manifest
from redesdl.protocol.auth import ClusterSecret
from redesdl.protocol.codec import encode
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.sources import SourceAddress
from redesdl.protocol.tickets import Tickets
from redesdl.protocol.wire import PROTOCOL_VERSION
from redesdl.secondary.chunkserver import ChunkServerFactory
from redesdl.transfer.source import SourceConnection

from .secondaryparts import fresh_stats, scanned_index
from .test_central import A, Peer, make_factory, secondary
from .wire import frames

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)

FIELDS = [
    "id", "name", "role", "version", "secondary_id", "port", "advertise", "boot",
    "nonce", "proof", "token", "files", "names", "sha256", "size", "root",
    "chunks", "index", "ok", "reason", "source", "served", "after", "ticket",
    "file", "sources", "manifest", "length", "position", "code", "message",
]  # fmt: skip

CENTRAL_TYPES = [
    "hello", "auth", "list", "locate", "admit", "report", "bad_replica",
    "files_added", "files_removed", "catalog_done", "replicated", "activity",
    "ping", "verified", "error", "welcome", "nonsense",
]  # fmt: skip


#: Values that get a message past its first checks, so later fields are tried.
PLAUSIBLE = st.fixed_dictionaries(
    {},
    optional={
        "version": st.just(PROTOCOL_VERSION),
        "role": st.sampled_from(["client", "secondary"]),
        "name": st.sampled_from(["a.bin", "s1", "../x", ""]),
        "sha256": st.sampled_from([A["sha256"], "0" * 64]),
        "token": st.just("t" * 16),
        "id": st.integers(0, 3),
    },
)


def messages(types: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Messages of a known type: plausible fields, then anything at all."""
    fields = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4)
    return st.builds(
        lambda kind, plausible, rest: {**plausible, **rest, "type": kind},
        st.sampled_from(types),
        PLAUSIBLE,
        fields,
    )


#: One valid message of each type a client sends the central.
VALID_FROM_CLIENT = [
    CLIENT_HELLO := {
        "type": "hello",
        "version": PROTOCOL_VERSION,
        "role": "client",
        "name": "c",
        "token": "t" * 16,
    },
    {"type": "list", "id": 1, "after": "a"},
    {"type": "locate", "id": 2, "name": "a.bin"},
    {"type": "admit", "id": 3, "name": "a.bin"},
    {"type": "report", "name": "a.bin", "ok": True, "size": 10,
     "bytes_fetched": 10, "reason": ""},
    {"type": "bad_replica", "name": "a.bin", "sha256": A["sha256"], "source": "s1"},
    {"type": "ping", "id": 4},
]  # fmt: skip
#: One valid message of each type a secondary sends the central.
VALID_FROM_SECONDARY = [
    {"type": "files_added", "files": [A]},
    {"type": "files_removed", "names": ["a.bin"]},
    {"type": "replicated", "name": "a.bin", "ok": False, "reason": "x"},
    {"type": "activity", "served": [{"file": "a.bin", "client": "c", "chunks": 1,
                                     "bytes": 2}]},
    {"type": "verified", "name": "a.bin", "ok": True},
    {"type": "catalog_done"},
    {"type": "locate", "id": 2, "name": "a.bin"},
    {"type": "auth", "id": 5, "proof": "0" * 64},
]  # fmt: skip


@st.composite
def mutated(draw: Any, valid: list[dict[str, Any]]) -> dict[str, Any]:
    """A valid message with some fields dropped or replaced by anything."""
    message = dict(draw(st.sampled_from(valid)))
    for key in draw(st.sets(st.sampled_from(sorted(message)), max_size=3)):
        if key == "type":
            continue
        if draw(st.booleans()):
            del message[key]
        else:
            message[key] = draw(json_values)
    return message


class ThreadedClock(Clock):
    """A fake clock a writer thread can report to (its reports are dropped)."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        pass


def answers(transport: StringTransport) -> list[dict[str, Any]]:
    out = [m for m in frames(transport.value()) if isinstance(m, dict)]
    transport.clear()
    return out


def assert_no_internal_errors(replies: list[dict[str, Any]]) -> None:
    assert not [r for r in replies if r.get("code") == "internal"], replies


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=8))
def test_random_bytes_at_the_central_get_typed_errors(
    data: bytes, cuts: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        peer = Peer(make_factory(Path(folder), Clock()))
        points = sorted({0, len(data), *[c for c in cuts if c < len(data)]})
        for start, end in itertools.pairwise(points):
            peer.protocol.dataReceived(data[start:end])
        for reply in answers(peer.transport):
            assert reply["type"] == "error", reply
            assert reply["code"] != "internal"


#: How far a conversation gets before the fuzzed messages: nowhere, past
#: hello, or holding a download slot for a.bin.
OPENINGS = [[], [CLIENT_HELLO], [CLIENT_HELLO, {"type": "admit", "name": "a.bin"}]]


@FUZZ
@given(
    st.sampled_from(OPENINGS),
    st.lists(
        st.one_of(messages(CENTRAL_TYPES), *[mutated(VALID_FROM_CLIENT)] * 2),
        min_size=1,
        max_size=8,
    ),
)
def test_any_fields_in_any_client_message(
    opening: list[dict[str, Any]], sequence: list[dict[str, Any]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        factory = make_factory(Path(folder), Clock())
        secondary(factory, "s1", [A])
        peer = Peer(factory, host="10.0.0.9")
        for message in opening:
            peer.send(message)
        for message in sequence:
            peer.protocol.dataReceived(encode(message))
        assert_no_internal_errors(answers(peer.transport))


@FUZZ
@given(
    st.lists(
        st.one_of(messages(CENTRAL_TYPES), *[mutated(VALID_FROM_SECONDARY)] * 2),
        min_size=1,
        max_size=8,
    )
)
def test_any_fields_from_a_registered_secondary(
    sequence: list[dict[str, Any]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        factory = make_factory(Path(folder), Clock())
        peer = secondary(factory, "s1", [A])
        peer.replies()
        for message in sequence:
            peer.protocol.dataReceived(encode(message))
        assert_no_internal_errors(answers(peer.transport))


@FUZZ
@given(st.lists(messages(["auth", "hello", "ping", "files_added"]), max_size=4))
def test_any_answer_to_the_central_challenge(sequence: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        factory = make_factory(Path(folder), Clock(), secret=ClusterSecret(b"k" * 20))
        peer = Peer(factory)
        peer.send(
            {"type": "hello", "version": PROTOCOL_VERSION, "role": "secondary",
             "name": "s1", "secondary_id": "i", "port": 1, "nonce": "0" * 32}
        )  # fmt: skip
        for message in sequence:
            peer.protocol.dataReceived(encode(message))
        assert_no_internal_errors(answers(peer.transport))
        assert factory.registry.secondaries == {}


def chunk_server(folder: Path, tickets: bool) -> Any:
    (folder / "data").mkdir()
    (folder / "data" / "f").write_bytes(b"x" * 1000)
    index = scanned_index(folder / "data", folder / "index.json")
    stats = fresh_stats(folder / "s.json")
    factory = ChunkServerFactory(
        index,
        "s1",
        stats,
        clock=Clock(),
        tickets=Tickets(ClusterSecret(b"k" * 20)) if tickets else None,
    )
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


SERVED = hashlib.sha256(b"x" * 1000).hexdigest()
TICKET = Tickets(ClusterSecret(b"k" * 20)).issue(SERVED, "c", 10**6).to_wire()
#: One valid message of each type a client sends a chunk server.
VALID_FOR_CHUNK_SERVER = [
    {"type": "hello", "id": 1, "version": PROTOCOL_VERSION, "name": "c"},
    {"type": "manifest", "id": 2, "name": "f", "sha256": SERVED, "ticket": TICKET},
    {"type": "get", "id": 3, "name": "f", "sha256": SERVED, "index": 0,
     "ticket": TICKET},
]  # fmt: skip


@FUZZ
@given(
    st.lists(
        st.one_of(
            messages(["hello", "manifest", "get", "error", "chunk", "x"]),
            *[mutated(VALID_FOR_CHUNK_SERVER)] * 2,
        ),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_any_fields_at_a_chunk_server(
    sequence: list[dict[str, Any]], tickets: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        protocol, transport = chunk_server(Path(folder), tickets)
        protocol.dataReceived(encode(VALID_FOR_CHUNK_SERVER[0]))
        for message in sequence:
            protocol.dataReceived(encode(message))
        while transport.producer is not None:
            transport.producer.resumeProducing()
        assert_no_internal_errors(answers(transport))


@FUZZ
@given(st.lists(messages(["welcome", "catalog", "located", "queued", "admitted",
                          "error", "verify", "x"]), max_size=6))  # fmt: skip
def test_any_reply_from_a_hostile_central(sequence: list[dict[str, Any]]) -> None:
    connection = CentralConnection("c")
    transport = StringTransport()
    connection.makeConnection(transport)
    connection.welcomed.addErrback(lambda _: None)
    for message in sequence:
        connection.dataReceived(encode({**message, "id": 1}))
    assert_no_internal_errors(answers(transport))


@FUZZ
@given(st.lists(messages(["welcome", "manifest", "chunk", "error", "x"]), max_size=6))
def test_any_reply_from_a_hostile_source(sequence: list[dict[str, Any]]) -> None:
    connection = SourceConnection("c", ThreadedClock())
    transport = StringTransport()
    connection.makeConnection(transport)
    connection.welcomed.addErrback(lambda _: None)
    for message in sequence:
        connection.dataReceived(encode(message))
    assert_no_internal_errors(answers(transport))
    connection.connectionLost(None)  # type: ignore[arg-type]


@FUZZ
@given(json_values)
def test_wire_decoders_raise_only_typed_errors(value: Any) -> None:
    for decoder in (FileInfo.from_wire, Manifest.from_wire, SourceAddress.from_wire):
        try:
            decoder(value)
        except ProtocolError:
            pass


@FUZZ
@given(st.integers(0, 2**32 - 1), st.binary(max_size=64))
def test_length_prefixes_of_any_size(length: int, rest: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        peer = Peer(make_factory(Path(folder), Clock()))
        peer.protocol.dataReceived(length.to_bytes(4, "big") + rest)
        replies = answers(peer.transport)
        if length > peer.protocol.maxFrameLength:
            assert [r["code"] for r in replies] == ["too_large"]
            assert peer.transport.disconnecting
        json.dumps(replies)
