"""Chunk bytes sent with os.sendfile: the range's logic on a fake socket, then a
chunk server choosing between sendfile and reading blocks."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.interfaces import ISSLTransport, ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import alsoProvides, implementer

from redesdl.manifest import MIN_CHUNK_SIZE
from redesdl.protocol.wire import PROTOCOL_VERSION
from redesdl.secondary.chunkserver import ChunkServerFactory, RangeWriter
from redesdl.secondary.ratelimit import TokenBucket
from redesdl.secondary.sendfile import SLICE, SendfileRange

from .secondaryparts import fresh_stats, scanned_index
from .wire import frames, send

CONTENT = os.urandom(3 * SLICE + 12345)


class FakeSocket:
    """A non-blocking socket with room for C{room} bytes until the peer reads."""

    def __init__(
        self,
        room: int,
        most_per_call: int | None = None,
        error: OSError | None = None,
    ) -> None:
        self.room = room
        self.error = error
        self.most_per_call = most_per_call
        self.wire = bytearray()
        self.calls = 0

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if not self.room:
            raise BlockingIOError
        count = min(count, self.room, self.most_per_call or count)
        data = os.pread(fd, count, offset)
        self.wire += data
        self.room -= len(data)
        return len(data)

    def peer_reads(self, count: int) -> None:
        self.room += count


class Harness:
    """A range on a fake socket, and a record of what it asked for."""

    def __init__(self, path: Path, offset: int, length: int, sock: FakeSocket):
        self.socket = sock
        self.pending = 0
        self.waits = 0
        self.sent: list[int] = []
        self.gone: list[OSError] = []
        self.range = SendfileRange(
            os.open(path, os.O_RDONLY),
            offset,
            length,
            sendfile=sock.sendfile,
            pending_bytes=lambda: self.pending,
            wait_writable=self.wait,
            on_sent=self.sent.append,
            on_peer_gone=self.gone.append,
        )

    def wait(self) -> None:
        self.waits += 1

    def turns(self, most: int = 1000) -> int:
        """Call the range once per writability it asked for, as the reactor
        would; return how many times it was called."""
        called = 0
        while self.waits and called < most and not self.range.done:
            if not self.socket.room:
                break  # not writable: the reactor would not call
            self.waits -= 1
            called += 1
            assert self.range.write_block()
        return called


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(CONTENT)
    return path


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for harness in made:
        harness.range.close()


def start(
    harnesses: list[Harness],
    data: Path,
    sock: FakeSocket,
    offset: int = 0,
    length: int = len(CONTENT),
) -> Harness:
    harness = Harness(data, offset, length, sock)
    harnesses.append(harness)
    return harness


def test_short_writes_advance_until_the_range_is_sent(
    data: Path, harnesses: list[Harness]
) -> None:
    sock = FakeSocket(room=10**9, most_per_call=100_000)
    harness = start(harnesses, data, sock, offset=5, length=len(CONTENT) - 5)
    assert harness.range.write_block()
    harness.turns(most=10**6)
    assert harness.range.done
    assert bytes(sock.wire) == CONTENT[5:]
    assert sum(harness.sent) == len(CONTENT) - 5
    assert max(harness.sent) <= 100_000


def test_one_call_sends_at_most_a_slice(data: Path, harnesses: list[Harness]) -> None:
    sock = FakeSocket(room=10**9)
    harness = start(harnesses, data, sock)
    assert harness.range.write_block()
    assert len(sock.wire) == SLICE and sock.calls == 1 and harness.waits == 1
    harness.turns()
    assert bytes(sock.wire) == CONTENT and harness.range.done
    assert sock.calls == 4


def test_a_full_socket_waits_for_writability_then_resumes(
    data: Path, harnesses: list[Harness]
) -> None:
    sock = FakeSocket(room=0)
    harness = start(harnesses, data, sock)
    assert harness.range.write_block()
    assert sock.calls == 1 and harness.waits == 1 and not sock.wire
    sock.peer_reads(10**9)
    harness.turns()
    assert bytes(sock.wire) == CONTENT and harness.range.done


def test_a_peer_that_never_reads_costs_one_call(
    data: Path, harnesses: list[Harness]
) -> None:
    sock = FakeSocket(room=300_000, most_per_call=200_000)
    harness = start(harnesses, data, sock)
    assert harness.range.write_block()
    assert harness.turns() == 1  # then the socket is full: never writable again
    for _ in range(1000):
        assert harness.turns() == 0
    assert sock.calls == 2
    assert harness.range.write_block(), "a spurious wake-up"
    assert sock.calls == 3 and harness.waits == 2
    assert len(sock.wire) == 300_000 and harness.range.held == 0
    assert not harness.range.done


def test_a_file_that_shrinks_mid_send_stops_without_extra_bytes(
    data: Path, harnesses: list[Harness]
) -> None:
    sock = FakeSocket(room=10**9)
    harness = start(harnesses, data, sock)
    assert harness.range.write_block()
    os.truncate(data, SLICE + 1000)
    assert harness.range.write_block()
    assert not harness.range.write_block(), "the file ended before the range"
    assert bytes(sock.wire) == CONTENT[: SLICE + 1000]
    assert not harness.range.done


def test_nothing_is_sent_while_the_transport_holds_bytes(
    data: Path, harnesses: list[Harness]
) -> None:
    sock = FakeSocket(room=10**9)
    harness = start(harnesses, data, sock)
    harness.pending = 17  # the chunk header, not yet sent by Twisted
    assert harness.range.write_block()
    assert sock.calls == 0 and harness.waits == 0
    harness.pending = 0  # the transport drained: the session calls again
    assert harness.range.write_block()
    assert sock.calls == 1


def test_a_peer_gone_is_reported_not_blamed_on_the_file(
    data: Path, harnesses: list[Harness]
) -> None:
    sock = FakeSocket(room=10**9, error=ConnectionResetError())
    harness = start(harnesses, data, sock)
    assert harness.range.write_block()
    assert [type(e) for e in harness.gone] == [ConnectionResetError]


# -- The chunk server's choice ---------------------------------------------


@implementer(ITCPTransport)
class FakeTCPTransport(StringTransport):
    """A plain TCP transport whose socket is one end of a real socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.socket = sock
        self.writing = 0

    def getHandle(self) -> socket.socket:
        return self.socket

    def startWriting(self) -> None:
        self.writing += 1

    def abortConnection(self) -> None:
        self.disconnecting = True


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def served(tmp_path: Path, transport: Any, limiter: Any = None) -> Any:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_bytes(CONTENT[: 3 * MIN_CHUNK_SIZE])
    index = scanned_index(data, tmp_path / "index.json")
    clock = Clock()
    limiter = TokenBucket(limiter, clock) if limiter else None
    factory = ChunkServerFactory(
        index, "s1", fresh_stats(tmp_path / "stats.json"), limiter, clock
    )
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(transport)
    send(protocol, {"type": "hello", "version": PROTOCOL_VERSION, "name": "c", "id": 1})
    return protocol, index.entries["f"]


def ask(protocol: Any, entry: Any, index: int = 0) -> None:
    request = {"type": "get", "id": 2, "name": "f", "index": index}
    send(protocol, {**request, "sha256": entry.manifest.sha256})


def read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return bytes(out)
        if not data:
            return bytes(out)
        out += data


def test_plain_tcp_sends_chunk_bytes_with_sendfile(tmp_path: Path, pair: Any) -> None:
    ours, theirs = pair
    transport = FakeTCPTransport(ours)
    protocol, entry = served(tmp_path, transport)
    transport.clear()
    ask(protocol, entry)
    received = bytearray()
    for _ in range(1000):
        received += read_all(theirs)
        if transport.producer is None:
            break
        transport.producer.resumeProducing()  # the socket became writable
    received += read_all(theirs)
    header, inline = frames(transport.value())
    assert inline == b"", "no chunk byte went through the transport"
    assert header == {"type": "chunk", "id": 2, "index": 0, "length": MIN_CHUNK_SIZE}
    assert bytes(received) == CONTENT[:MIN_CHUNK_SIZE]
    assert protocol.factory.sent_by_kernel == MIN_CHUNK_SIZE
    served_file = protocol.factory.stats.data["served"]["f"]
    assert served_file["bytes"] == MIN_CHUNK_SIZE


def test_a_file_that_shrank_under_sendfile_aborts_the_connection(
    tmp_path: Path, pair: Any
) -> None:
    ours, theirs = pair
    transport = FakeTCPTransport(ours)
    protocol, entry = served(tmp_path, transport)
    os.truncate(entry.path, MIN_CHUNK_SIZE + 10)
    ask(protocol, entry, index=1)
    for _ in range(100):
        read_all(theirs)
        if transport.disconnecting or transport.producer is None:
            break
        transport.producer.resumeProducing()
    assert transport.disconnecting
    assert protocol.factory.sent_by_kernel == 10
    assert "f" not in protocol.factory.stats.data["served"]


def writer_for(protocol: Any, entry: Any) -> Any:
    return protocol.open_chunk(entry, 0, MIN_CHUNK_SIZE)


def test_tls_and_rate_limits_read_blocks_instead(tmp_path: Path, pair: Any) -> None:
    ours, _ = pair
    tls = FakeTCPTransport(ours)
    alsoProvides(tls, ISSLTransport)
    for folder, transport, limit in [
        ("tls", tls, None),
        ("limited", FakeTCPTransport(ours), 10**6),
        ("string", StringTransport(), None),
    ]:
        (tmp_path / folder).mkdir()
        protocol, entry = served(tmp_path / folder, transport, limit)
        writer = writer_for(protocol, entry)
        assert isinstance(writer, RangeWriter), folder
        writer.close()
    protocol, entry = served(tmp_path, FakeTCPTransport(ours))
    writer = writer_for(protocol, entry)
    assert isinstance(writer, SendfileRange)
    writer.close()
