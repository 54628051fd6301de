"""The writer thread's gathering: buffer reuse, hand-offs counted, order kept.

A fake reactor collects what the thread calls back; the test joins the
thread (no sleeping) and then runs those calls, as the reactor would.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from redesdl.transfer.buffers import BufferPool
from redesdl.transfer.directio import DIRECT_QUEUED_BYTES
from redesdl.transfer.store import ChunkWriter, MemoryCopy
from redesdl.transfer.writer import HIGH_WATER, SinkWorker

GATHER = 64 * 1024
TLS_RECORD = 16 * 1024


class ThreadReactor:
    """Collects C{callFromThread} calls; L{drain} runs them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        self.calls.append((f, args))

    def drain(self) -> None:
        calls, self.calls = self.calls, []
        for f, args in calls:
            f(*args)


class Recorder:
    """A sink that keeps the pieces it is handed, as they are."""

    index = 0
    error = None

    def __init__(self) -> None:
        self.seen: list[memoryview] = []

    def write(self, index: int, data: memoryview) -> None:
        self.seen.append(data)


def finish(worker: SinkWorker, reactor: ThreadReactor) -> None:
    worker.stop()
    worker._thread.join()
    reactor.drain()
    assert worker.stopped.called


def test_the_pool_hands_out_the_buffers_it_got_back() -> None:
    pool = BufferPool(size=GATHER, keep=2)
    first, second = pool.take(), pool.take()
    pool.give(first)
    pool.give(second)
    pool.give(bytearray(GATHER))
    assert {id(pool.take()), id(pool.take())} == {id(first), id(second)}
    assert pool.allocated == 2


class ImmediateReactor:
    """Runs what the thread calls back at once, in the thread."""

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        f(*args)


def test_small_pieces_cost_one_hand_off_per_buffer_and_reuse_it() -> None:
    pool = BufferPool(size=GATHER, keep=5)
    worker = SinkWorker(ImmediateReactor(), StringTransport(), "test", pool)
    rounds, per_round = 10, 4 * GATHER + 123
    chunk = MemoryCopy(0, rounds * per_round, "")
    data = os.urandom(rounds * per_round)
    pieces = 0
    for start in range(0, len(data), per_round):
        # One chunk's end per round: every buffer is back in the pool after.
        written = threading.Event()
        for offset in range(start, start + per_round, TLS_RECORD):
            end = min(offset + TLS_RECORD, start + per_round)
            worker.submit(chunk, memoryview(data)[offset:end])
            pieces += 1
        worker.after(written.set)
        written.wait()
    worker.stop()
    worker._thread.join()
    assert pieces == 170
    assert worker.handoffs == 50
    assert pool.allocated == 5
    assert chunk.error is None and bytes(chunk.data) == data


def test_a_large_piece_goes_over_uncopied() -> None:
    reactor = ThreadReactor()
    pool = BufferPool(size=GATHER)
    worker = SinkWorker(reactor, StringTransport(), "test", pool)
    recorder = Recorder()
    piece = memoryview(bytes(2 * GATHER))
    worker.submit(recorder, piece)
    finish(worker, reactor)
    assert recorder.seen == [piece] and recorder.seen[0] is piece
    assert pool.allocated == 0


def test_large_pieces_after_a_small_one_still_go_over_uncopied() -> None:
    """A chunk's first bytes come with its header, so a small piece starts
    most chunks: the large pieces after it must not be copied one by one."""
    reactor = ThreadReactor()
    pool = BufferPool(size=GATHER)
    worker = SinkWorker(reactor, StringTransport(), "test", pool)
    recorder = Recorder()
    small = memoryview(b"h" * 100)
    large = [memoryview(os.urandom(GATHER + n)) for n in (0, 7, GATHER)]
    worker.submit(recorder, small)
    for piece in large:
        worker.submit(recorder, piece)
    worker.submit(recorder, small)
    finish(worker, reactor)
    seen = recorder.seen
    assert [bytes(s) for s in seen] == [b"h" * 100, *map(bytes, large), b"h" * 100]
    assert all(seen[1 + n] is piece for n, piece in enumerate(large))
    assert worker.handoffs == 5


class Stuck:
    """A sink that holds the writer thread until the test opens C{gate}."""

    index = 0
    error = None

    def __init__(self, gate: threading.Event) -> None:
        self._gate = gate

    def write(self, index: int, data: memoryview) -> None:
        self._gate.wait()


def test_reading_pauses_over_high_water_and_resumes_once_written() -> None:
    reactor = ThreadReactor()
    transport = StringTransport()
    worker = SinkWorker(reactor, transport, "test", BufferPool(size=GATHER))
    gate = threading.Event()
    worker.submit(Stuck(gate), memoryview(bytes(GATHER)))
    chunk = MemoryCopy(0, HIGH_WATER, "")
    for _ in range(HIGH_WATER // GATHER):
        worker.submit(chunk, memoryview(bytes(GATHER)))
    assert transport.producerState == "paused"
    gate.set()
    finish(worker, reactor)
    assert transport.producerState == "producing"


@pytest.mark.parametrize("high_water", [HIGH_WATER, DIRECT_QUEUED_BYTES])
def test_reading_pauses_past_the_high_water_the_connection_was_given(
    high_water: int,
) -> None:
    reactor = ThreadReactor()
    transport = StringTransport()
    worker = SinkWorker(
        reactor, transport, "test", BufferPool(size=GATHER), high_water=high_water
    )
    gate = threading.Event()
    sink = Stuck(gate)
    queued = 0
    while transport.producerState == "producing":
        worker.submit(sink, memoryview(bytes(GATHER)))
        queued += GATHER
    # Paused by the first piece that took the queue past its high water.
    assert queued == high_water + GATHER
    gate.set()
    finish(worker, reactor)
    assert transport.producerState == "producing"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lengths=st.lists(st.integers(1, 3 * GATHER), min_size=1, max_size=4),
    splits=st.lists(
        st.one_of(st.just(TLS_RECORD), st.integers(1, 2 * GATHER)), min_size=1
    ),
)
def test_gathering_keeps_byte_order_and_chunk_boundaries(
    tmp_path: Path, lengths: list[int], splits: list[int]
) -> None:
    data = os.urandom(sum(lengths))
    path = tmp_path / "part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        reactor = ThreadReactor()
        worker = SinkWorker(reactor, StringTransport(), "t", BufferPool(size=GATHER))
        writers, offset, turn = [], 0, 0
        for index, length in enumerate(lengths):
            expected = hashlib.sha256(data[offset : offset + length]).hexdigest()
            writer = ChunkWriter(fd, index, offset, length, expected)
            writers.append(writer)
            # Arbitrary piece sizes, as a socket or TLS would hand them up.
            view = memoryview(data)[offset : offset + length]
            while view:
                size = splits[turn % len(splits)]
                turn += 1
                worker.submit(writer, view[:size])
                view = view[size:]
            worker.after(lambda: None)
            offset += length
        finish(worker, reactor)
    finally:
        os.close(fd)
    assert all(w.error is None and w.matches() for w in writers)
    written = path.read_bytes()
    assert hashlib.sha256(written).digest() == hashlib.sha256(data).digest()
