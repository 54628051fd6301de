"""Random replies from a hostile source never put a byte where it was not asked.

Only one answer's bytes ever reach a request's target, never more than its
length, and nothing at all once the source broke the rules.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from redesdl.manifest import MIN_CHUNK_SIZE, Manifest
from redesdl.protocol.codec import encode
from redesdl.transfer.source import MIN_PROGRESS, SourceConnection

CHUNKS = 4
MANIFEST = Manifest(
    "f", CHUNKS * MIN_CHUNK_SIZE, "0" * 64, tuple(f"{i}" * 64 for i in range(CHUNKS))
)


class SyncWorker:
    """The writer thread's contract: writes at once, reports when caught up."""

    def __init__(self) -> None:
        self.reports: list[Any] = []

    def submit(self, sink: Any, piece: memoryview) -> None:
        if sink.error is None:
            try:
                sink.write(sink.index, piece)
            except Exception as e:
                sink.error = e

    def after(self, call: Any) -> None:
        self.reports.append(call)

    def catch_up(self) -> None:
        reports, self.reports = self.reports, []
        for call in reports:
            call()

    def stop(self) -> Any:
        return succeed(None)


class ThreadedClock(Clock):
    """A fake clock the real writer thread can report to as it stops."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        pass


class Target:
    def __init__(self, index: int) -> None:
        self.index, self.length = index, MIN_CHUNK_SIZE
        self.error: Exception | None = None
        self.written = b""
        self.closed = False

    def write(self, index: int, data: memoryview) -> None:
        # Naive on purpose (the store would refuse): the connection alone
        # must keep every unasked byte away.
        assert index == self.index
        self.written += bytes(data)


class HostileSource(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.connection = SourceConnection("c", ThreadedClock(), 10.0, "s")
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        self.connection._worker.stop()
        self.connection._worker._thread.join(5)
        self.worker = SyncWorker()
        self.connection._worker = self.worker  # type: ignore[assignment]
        self.connection.welcomed.addErrback(lambda _: None)
        welcome = {"type": "welcome", "id": 1, "version": 1, "name": "s"}
        self.connection.dataReceived(encode(welcome))
        self.requests: dict[int, Target] = {}
        self.outcomes: dict[int, list[Any]] = {}
        self.next_index = 0
        self.frozen: dict[int, bytes] | None = None
        self.sent = 0

    def feed(self, data: bytes) -> None:
        if not self.connection.lost:
            self.connection.dataReceived(data)

    @precondition(lambda self: self.next_index < CHUNKS)
    @rule()
    def fetch(self) -> None:
        target = Target(self.next_index)
        self.next_index += 1
        outcome: list[Any] = []
        done = self.connection.fetch_chunk(MANIFEST, target, lambda t: True)
        done.addBoth(outcome.append)
        request_id = max(self.connection._requests, default=None)
        if request_id is not None and request_id not in self.requests:
            self.requests[request_id] = target
            self.outcomes[request_id] = outcome

    @rule(data=st.data(), cut=st.integers(0, MIN_CHUNK_SIZE))
    def chunk(self, data: st.DataObject, cut: int) -> None:
        ids = [*sorted(self.requests), 0, 99]
        request_id = data.draw(st.sampled_from(ids))
        index = self.requests[request_id].index if request_id in self.requests else 0
        length = data.draw(st.sampled_from([MIN_CHUNK_SIZE, 1, MIN_CHUNK_SIZE - 1]))
        header = {"type": "chunk", "id": request_id, "index": index, "length": length}
        # Every header's bytes are a different value, to tell them apart.
        self.sent += 1
        body = bytes([self.sent % 250 + 1]) * length
        # Split anywhere: the header and its bytes may arrive in pieces.
        stream = encode(header) + body
        self.feed(stream[:cut])
        self.feed(stream[cut:])

    @rule()
    def writer_catches_up(self) -> None:
        self.worker.catch_up()

    @rule(request_id=st.integers(0, 8))
    def error_reply(self, request_id: int) -> None:
        self.feed(
            encode({"type": "error", "id": request_id, "code": "busy", "message": "x"})
        )

    @rule(kind=st.sampled_from(["welcome", "manifest", "pong", "x", "chunk"]))
    def odd_message(self, kind: str) -> None:
        self.feed(encode({"type": kind, "id": 2}))

    @invariant()
    def only_one_answer_lands_per_request(self) -> None:
        for target in self.requests.values():
            assert len(set(target.written)) <= 1
            assert len(target.written) <= target.length

    @invariant()
    def nothing_lands_after_a_violation(self) -> None:
        if self.connection.violation is None and not self.connection.lost:
            return
        written = {i: t.written for i, t in self.requests.items()}
        if self.frozen is None:
            self.frozen = written
        assert {i: written[i] for i in self.frozen} == self.frozen

    @invariant()
    def each_request_ends_at_most_once(self) -> None:
        for outcome in self.outcomes.values():
            assert len(outcome) <= 1

    def teardown(self) -> None:
        self.connection.connectionLost(Failure(ConnectionDone()))


HostileSource.TestCase.settings = settings(
    max_examples=150, stateful_step_count=20, deadline=None
)
test_a_hostile_source = HostileSource.TestCase


def test_a_source_that_dribbles_bytes_times_out() -> None:
    """A byte a second reset the progress timeout each time: a sole source
    trickling like that held a get for ever."""
    clock = ThreadedClock()
    connection = SourceConnection("c", clock, 10.0, "s")
    transport = StringTransport()
    connection.makeConnection(transport)
    connection._worker.stop()
    connection._worker._thread.join(5)
    connection._worker = SyncWorker()  # type: ignore[assignment]
    connection.dataReceived(encode({"type": "welcome", "id": 1, "version": 1}))
    target = Target(0)
    connection.fetch_chunk(MANIFEST, target, lambda t: True).addErrback(lambda _: None)
    request_id = max(connection._requests)
    header = {"type": "chunk", "id": request_id, "index": 0, "length": MIN_CHUNK_SIZE}
    connection.dataReceived(encode(header))
    for _ in range(9):
        clock.advance(1)
        connection.dataReceived(b"x")
    assert not transport.disconnecting and not connection.timed_out
    # 16 KiB within the timeout is progress: the timer starts again.
    connection.dataReceived(b"x" * (MIN_PROGRESS - 9))
    for _ in range(9):
        clock.advance(1)
        connection.dataReceived(b"x")
    assert not connection.timed_out
    clock.advance(1.5)
    assert connection.timed_out
    assert len(target.written) == MIN_PROGRESS + 9


def test_frames_nobody_asked_for_are_no_progress() -> None:
    """An error frame with no id every 9 s kept a source's chunk for ever."""
    clock = ThreadedClock()
    connection = SourceConnection("c", clock, 10.0, "s")
    connection.makeConnection(StringTransport())
    connection._worker.stop()
    connection._worker._thread.join(5)
    connection._worker = SyncWorker()  # type: ignore[assignment]
    connection.dataReceived(encode({"type": "welcome", "id": 1, "version": 1}))
    connection.fetch_chunk(MANIFEST, Target(0), lambda t: True).addErrback(
        lambda _: None
    )
    for _ in range(2):
        clock.advance(9)
        connection.dataReceived(encode({"type": "error", "code": "x", "message": ""}))
    assert connection.timed_out
