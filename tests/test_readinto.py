"""Payload received straight into the writer's buffers, on a scripted socket.

The connection is Twisted's own TCP class with a fake socket that hands out
the peer's bytes in whatever pieces the test decides, and fails when told
to. Every read goes through the transport's C{doRead}, as the reactor calls
it; the writer thread is real and joined before anything is checked.
"""

from __future__ import annotations

import errno
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import main, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from redesdl.manifest import MIN_CHUNK_SIZE, Manifest
from redesdl.protocol.codec import encode
from redesdl.transfer.buffers import READ_INTO_SIZE
from redesdl.transfer.errors import SourceViolationError
from redesdl.transfer.readinto import PayloadReader, can_read_into
from redesdl.transfer.source import SourceConnection

from .test_transfer_request import QueuedClock, Target, header

LENGTH = 3 * MIN_CHUNK_SIZE
MANIFEST = Manifest("f", 2 * LENGTH, "0" * 64, ("1" * 64, "2" * 64))
WELCOME = encode({"type": "welcome", "id": 1, "version": 1, "name": "s"})
AGAIN = "again"
RESET = "reset"


class ScriptedSocket:
    """What the peer sent, handed out as the script says, read by read."""

    def __init__(self, data: bytes, script: list[Any]) -> None:
        self._data = memoryview(data)
        self._script = list(script)
        self.recv_calls = 0
        self.recv_into_calls = 0

    def _next_size(self, wanted: int) -> int:
        step = self._script.pop(0) if self._script else wanted
        if step == AGAIN:
            raise BlockingIOError(errno.EAGAIN, "would block")
        if step == RESET:
            raise ConnectionResetError(errno.ECONNRESET, "reset by peer")
        return min(step, wanted, len(self._data))

    def recv(self, size: int) -> bytes:
        self.recv_calls += 1
        count = self._next_size(size)
        piece, self._data = self._data[:count], self._data[count:]
        return piece.tobytes()

    def recv_into(self, buffer: memoryview) -> int:
        self.recv_into_calls += 1
        count = self._next_size(len(buffer))
        buffer[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


class ScriptedConnection(tcp.Connection):
    """Twisted's TCP connection on a scripted socket, with no reactor."""

    def __init__(self, sock: ScriptedSocket, protocol: Any) -> None:
        self.socket = sock
        self.protocol = protocol
        self.connected = 1
        self.disconnecting = False
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def startReading(self) -> None:
        pass

    def stopReading(self) -> None:
        pass

    def loseConnection(self, reason: Any = None) -> None:
        self.disconnecting = True

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 1)


def run_reads(transport: ScriptedConnection, connection: SourceConnection) -> Any:
    """Call doRead as the reactor would until the connection ends."""
    while True:
        result = transport.doRead()
        if result is not None:
            connection.connectionLost(Failure(result))
            return result


def download(
    payloads: list[bytes], script: list[Any], extra: bytes = b""
) -> tuple[list[Target], list[Any], SourceConnection, ScriptedSocket]:
    clock = QueuedClock()
    connection = SourceConnection("c", clock, 10.0, "s")
    targets = [Target(i, LENGTH) for i in range(len(payloads))]
    stream = WELCOME + b"".join(
        header(2 + i, LENGTH) + payload for i, payload in enumerate(payloads)
    )
    sock = ScriptedSocket(stream + extra, script)
    transport = ScriptedConnection(sock, connection)
    connection.makeConnection(transport)
    connection.welcomed.addErrback(lambda _: None)
    results: list[Any] = []
    for target in targets:
        connection.fetch_chunk(MANIFEST, target, lambda t: True).addBoth(results.append)
    assert run_reads(transport, connection) is main.CONNECTION_DONE
    clock.drain(connection)
    return targets, results, connection, sock


def test_this_twisted_reads_tcp_as_the_reader_expects() -> None:
    """If a Twisted upgrade changes its TCP read, downloads keep working
    through it, but this says the fast path is gone."""
    assert can_read_into(ScriptedConnection(ScriptedSocket(b"", []), None))


def test_tls_and_other_transports_keep_their_own_read() -> None:
    assert PayloadReader.install(StringTransport(), None) is None  # type: ignore[arg-type]


def test_a_chunk_is_received_into_reused_buffers_not_new_bytes() -> None:
    payloads = [bytes([1]) * LENGTH, bytes([2]) * LENGTH]
    # The socket never has more than 64 KiB ready: many reads per buffer.
    targets, results, connection, sock = download(payloads, [64 * 1024] * 1000)
    assert [t.written for t in targets] == payloads
    assert results == [True, True]
    assert connection._reader is not None
    assert connection._reader.reads_into == sock.recv_into_calls > 20
    assert "doRead" not in vars(connection.transport), "given back once closed"
    # Each buffer is filled by many reads and used again once written.
    assert connection._worker.pool.allocated <= 3
    assert connection._worker.handoffs <= 2 * (LENGTH // READ_INTO_SIZE + 2)


def test_no_data_yet_and_a_reset_are_what_twisted_makes_of_them() -> None:
    payload = bytes(range(256)) * (LENGTH // 256)
    script = [10**9, 1000, AGAIN, 5000, AGAIN, AGAIN, 100_000, RESET]
    clock = QueuedClock()
    connection = SourceConnection("c", clock, 10.0, "s")
    target = Target(0, LENGTH)
    sock = ScriptedSocket(WELCOME + header(2, LENGTH) + payload, script)
    transport = ScriptedConnection(sock, connection)
    connection.makeConnection(transport)
    connection.welcomed.addErrback(lambda _: None)
    results: list[Any] = []
    connection.fetch_chunk(MANIFEST, target, lambda t: True).addBoth(results.append)
    # The first read takes the welcome, the header and the start of the payload.
    assert run_reads(transport, connection) is main.CONNECTION_LOST
    clock.drain(connection)
    assert sock.recv_into_calls == 7
    assert target.written == payload[: len(target.written)]
    assert 0 < len(target.written) < LENGTH
    assert len(results) == 1 and isinstance(results[0], Failure)


@settings(max_examples=60, deadline=None)
@given(
    script=st.lists(
        st.one_of(st.integers(1, 3 * MIN_CHUNK_SIZE), st.just(AGAIN)), max_size=60
    ),
    seed=st.integers(0, 255),
)
def test_any_pieces_reach_their_own_chunk_in_order(
    script: list[Any], seed: int
) -> None:
    payloads = [bytes([seed]) * LENGTH, bytes([255 - seed, seed]) * (LENGTH // 2)]
    targets, results, connection, _ = download(payloads, script)
    assert [t.written for t in targets] == payloads
    assert results == [True, True]
    assert connection.violation is None


def test_bytes_after_a_finished_chunk_are_not_payload() -> None:
    """A second header for a chunk already answered drops the source, and
    what follows it reaches no target, whichever way it was read."""
    payloads = [b"a" * LENGTH, b"b" * LENGTH]
    extra = header(2, LENGTH) + b"evil" * (LENGTH // 4)
    targets, results, connection, _ = download(payloads, [], extra)
    assert [t.written for t in targets] == payloads
    assert connection.violation is not None
    for result in results:
        assert result is True or result.check(SourceViolationError)


def test_a_source_that_lies_in_its_header_gets_no_byte_written() -> None:
    clock = QueuedClock()
    connection = SourceConnection("c", clock, 10.0, "s")
    target = Target(0, LENGTH)
    lie = header(2, LENGTH + 1) + b"x" * (LENGTH + 1)
    sock = ScriptedSocket(WELCOME + lie, [])
    transport = ScriptedConnection(sock, connection)
    connection.makeConnection(transport)
    connection.welcomed.addErrback(lambda _: None)
    results: list[Any] = []
    connection.fetch_chunk(MANIFEST, target, lambda t: True).addBoth(results.append)
    run_reads(transport, connection)
    clock.drain(connection)
    assert target.written == b""
    assert sock.recv_into_calls == 0
    assert len(results) == 1
    results[0].trap(SourceViolationError)
