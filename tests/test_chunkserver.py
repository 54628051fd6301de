"""The secondary's chunk server, driven through a StringTransport."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from redesdl.manifest import MIN_CHUNK_SIZE
from redesdl.protocol.codec import encode
from redesdl.protocol.wire import PROTOCOL_VERSION
from redesdl.secondary.chunkserver import ChunkServerFactory
from redesdl.secondary.index import DataIndex
from redesdl.secondary.ratelimit import TokenBucket

from .secondaryparts import fresh_stats, scanned_index
from .wire import send, take

CONTENT = bytes(range(256)) * (MIN_CHUNK_SIZE // 256) + b"tail"


@pytest.fixture
def served(tmp_path: Path) -> tuple[Any, StringTransport, DataIndex]:
    data = tmp_path / "data"
    (data / "dir").mkdir(parents=True)
    (data / "dir" / "file").write_bytes(CONTENT)
    (tmp_path / "secret").write_bytes(b"do not serve")
    index = scanned_index(data, tmp_path / "index.json")
    stats = fresh_stats(tmp_path / "stats.json")
    protocol = ChunkServerFactory(index, "s1", stats, clock=Clock()).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, index


def hello(protocol: Any) -> None:
    send(protocol, {"type": "hello", "version": PROTOCOL_VERSION, "name": "c", "id": 1})


def test_hello_manifest_and_pipelined_chunks_in_order(served: Any) -> None:
    protocol, transport, index = served
    sha = index.entries["dir/file"].manifest.sha256
    hello(protocol)
    send(
        protocol,
        {"type": "manifest", "id": 2, "name": "dir/file", "sha256": sha},
        {"type": "get", "id": 3, "name": "dir/file", "sha256": sha, "index": 1},
        {"type": "get", "id": 4, "name": "dir/file", "sha256": sha, "index": 0},
    )
    out = take(transport)
    assert out[0] == {
        "type": "welcome",
        "id": 1,
        "version": PROTOCOL_VERSION,
        "name": "s1",
    }
    assert out[1]["type"] == "manifest" and out[1]["id"] == 2
    assert out[2] == {"type": "chunk", "id": 3, "index": 1, "length": 4}
    assert out[3] == b"tail"
    assert out[4] == {"type": "chunk", "id": 4, "index": 0, "length": MIN_CHUNK_SIZE}
    assert hashlib.sha256(out[5]).hexdigest() == out[1]["manifest"]["chunks"][0]


def test_an_error_never_interleaves_with_chunk_bytes(served: Any) -> None:
    protocol, transport, index = served
    sha = index.entries["dir/file"].manifest.sha256
    hello(protocol)
    transport.clear()
    send(
        protocol,
        {"type": "get", "id": 2, "name": "dir/file", "sha256": sha, "index": 0},
        {"type": "get", "id": 3, "name": "nope", "sha256": sha, "index": 0},
    )
    out = take(transport)
    assert [m["type"] if isinstance(m, dict) else "bytes" for m in out] == [
        "chunk",
        "bytes",
        "error",
    ]
    assert out[2]["code"] == "not_found" and out[2]["id"] == 3


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"type": "get", "id": 2, "name": "../secret", "index": 0}, "bad_request"),
        ({"type": "get", "id": 2, "name": "dir/file", "index": 0}, "bad_request"),
        (
            {"type": "manifest", "id": 2, "name": "/etc/passwd", "sha256": "0" * 64},
            "bad_request",
        ),
        (
            {"type": "manifest", "id": 2, "name": "not/here", "sha256": "0" * 64},
            "not_found",
        ),
        ({"type": "frobnicate", "id": 2}, "unknown_type"),
    ],
)
def test_bad_requests_get_typed_errors(served: Any, request_: dict, code: str) -> None:
    protocol, transport, _ = served
    hello(protocol)
    transport.clear()
    send(protocol, request_)
    (reply,) = take(transport)
    assert reply["type"] == "error" and reply["code"] == code and reply["id"] == 2
    assert not transport.disconnecting


def test_chunk_past_the_end_is_refused(served: Any) -> None:
    protocol, transport, index = served
    sha = index.entries["dir/file"].manifest.sha256
    hello(protocol)
    transport.clear()
    send(
        protocol,
        {"type": "get", "id": 2, "name": "dir/file", "sha256": sha, "index": 9},
    )
    (reply,) = take(transport)
    assert reply["code"] == "bad_request"


def test_requests_before_hello_are_refused(served: Any) -> None:
    protocol, transport, _ = served
    send(
        protocol, {"type": "manifest", "id": 1, "name": "dir/file", "sha256": "0" * 64}
    )
    (reply,) = take(transport)
    assert reply["code"] == "hello_first"


def test_wrong_version_is_refused(served: Any) -> None:
    protocol, transport, _ = served
    send(protocol, {"type": "hello", "version": 99, "name": "c", "id": 1})
    (reply,) = take(transport)
    assert reply["code"] == "version"


def test_a_file_that_shrank_aborts_the_connection(served: Any) -> None:
    protocol, transport, index = served
    entry = index.entries["dir/file"]
    hello(protocol)
    Path(entry.path).write_bytes(b"short")
    send(
        protocol,
        {
            "type": "get",
            "id": 2,
            "name": "dir/file",
            "sha256": entry.manifest.sha256,
            "index": 0,
        },
    )
    take(transport)
    assert transport.disconnecting or transport.disconnected


def test_a_garbage_frame_closes_only_that_connection(served: Any) -> None:
    protocol, transport, _ = served
    protocol.dataReceived(b"\x00\x00\x00\x05{bad}")
    assert transport.disconnecting
    protocol.dataReceived(encode({"type": "hello"}))
    assert b"welcome" not in transport.value()


def test_a_connection_that_stops_asking_or_reading_is_closed(served: Any) -> None:
    protocol, transport, index = served
    hello(protocol)
    sha = index.entries["dir/file"].manifest.sha256
    send(
        protocol,
        {"type": "get", "id": 2, "name": "dir/file", "sha256": sha, "index": 0},
    )
    clock = protocol.factory.clock
    clock.advance(59)
    transport.producer.resumeProducing()
    clock.advance(59)
    assert not transport.disconnected, "taking a block counts as activity"
    clock.advance(2)
    assert transport.disconnected


def test_stats_count_what_was_served_and_who_is_being_served(served: Any) -> None:
    protocol, transport, index = served
    factory = protocol.factory
    sha = index.entries["dir/file"].manifest.sha256
    hello(protocol)
    send(
        protocol,
        {"type": "get", "id": 2, "name": "dir/file", "sha256": sha, "index": 0},
        {"type": "get", "id": 3, "name": "dir/file", "sha256": sha, "index": 1},
    )
    assert factory.activeTransfers() == 1
    assert factory.beingServed() == {"dir/file": 1}
    take(transport)
    assert factory.activeTransfers() == 0
    served_file = factory.stats.data["served"]["dir/file"]
    assert served_file["chunks"] == 2 and served_file["bytes"] == len(CONTENT)
    assert served_file["clients"]["c"] == {"chunks": 2, "bytes": len(CONTENT)}


def test_a_ping_behind_a_chunk_is_answered_after_its_bytes(served: Any) -> None:
    protocol, transport, index = served
    sha = index.entries["dir/file"].manifest.sha256
    hello(protocol)
    transport.clear()
    send(
        protocol,
        {"type": "get", "id": 2, "name": "dir/file", "sha256": sha, "index": 0},
        {"type": "ping", "id": 3},
        {"type": "get", "id": 4, "name": "dir/file", "index": 0},
    )
    out = take(transport)
    assert [m["type"] if isinstance(m, dict) else "bytes" for m in out] == [
        "chunk",
        "bytes",
        "pong",
        "error",
    ]
    assert out[2]["id"] == 3 and out[3]["id"] == 4


def test_a_file_swapped_for_a_symlink_is_not_served(
    served: Any, tmp_path: Path
) -> None:
    protocol, transport, index = served
    entry = index.entries["dir/file"]
    Path(entry.path).unlink()
    Path(entry.path).symlink_to(tmp_path / "secret")
    hello(protocol)
    transport.clear()
    send(
        protocol,
        {
            "type": "get",
            "id": 2,
            "name": "dir/file",
            "sha256": entry.manifest.sha256,
            "index": 0,
        },
    )
    (reply,) = take(transport)
    assert reply["code"] == "not_found" and reply["id"] == 2
    assert b"do not serve" not in transport.value()


def test_the_rate_limit_paces_a_chunk(served: Any) -> None:
    protocol, transport, index = served
    factory = protocol.factory
    clock = factory.clock
    rate = 64 * 1024
    factory.limiter = TokenBucket(rate, clock)
    sha = index.entries["dir/file"].manifest.sha256
    hello(protocol)
    transport.clear()
    send(
        protocol,
        {"type": "get", "id": 2, "name": "dir/file", "sha256": sha, "index": 0},
    )
    for step in range(1, 81):
        clock.advance(0.05)
        if transport.producer is not None:
            transport.producer.resumeProducing()
        allowed = rate / 10 + rate * step * 0.05 + factory.limiter.blockSize + 100
        assert len(transport.value()) <= allowed
    out = take(transport)
    assert out[0]["length"] == MIN_CHUNK_SIZE and len(out[1]) == MIN_CHUNK_SIZE
    assert out[1] == CONTENT[:MIN_CHUNK_SIZE]


def test_a_peer_that_stops_reading_is_not_read_then_timed_out(served: Any) -> None:
    protocol, transport, index = served
    sha = index.entries["dir/file"].manifest.sha256
    hello(protocol)
    for i in range(8):
        send(
            protocol,
            {"type": "get", "id": 2 + i, "name": "dir/file", "sha256": sha, "index": 0},
        )
    assert transport.producerState == "paused", "the server stopped reading"
    protocol.factory.clock.advance(61)
    assert transport.disconnected
    protocol.connectionLost(None)
    assert not protocol.producing


def test_while_the_rate_limit_holds_a_block_drains_are_not_asked_for(
    served: Any,
) -> None:
    """Behind TLS a pull producer is asked for data again and again: while the
    rate limit holds a block back, the session stops being asked."""
    protocol, transport, index = served
    factory = protocol.factory
    factory.limiter = TokenBucket(64 * 1024, factory.clock)
    sha = index.entries["dir/file"].manifest.sha256
    hello(protocol)
    send(
        protocol,
        {"type": "get", "id": 2, "name": "dir/file", "sha256": sha, "index": 0},
    )
    for _ in range(100):
        if transport.producer is None:
            break
        transport.producer.resumeProducing()
    assert transport.producer is None, "not asked while a block waits"
    assert protocol.heldBytes() > 0, "a block waits for the rate limit"
    factory.clock.advance(1)
    assert transport.producer is not None, "asked again once the block went out"
    take(transport)
