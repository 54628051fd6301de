"""A chunk request's machine, every (state, input) pair, and its connection."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from redesdl.machines import chunk_request as request
from redesdl.machines.chunk_request import new_request
from redesdl.manifest import MIN_CHUNK_SIZE, Manifest, chunk_size_for
from redesdl.protocol.codec import encode
from redesdl.transfer import plan
from redesdl.transfer.errors import SourceViolationError
from redesdl.transfer.source import SourceConnection

from .wire import frames


class Verbs:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.dropped: list[str] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def drop(self, why: str) -> None:
        self.dropped.append(why)


#: The inputs that lead from a new request to each state.
PATHS = {
    "created": [],
    "requested": ["send"],
    "receiving": ["send", "header"],
    "writing": ["send", "header", "body_done"],
    "verified": ["send", "header", "body_done", "verified"],
    "failed": ["send", "refused"],
}

INPUTS = [
    "send", "header", "mismatched", "body_done", "verified", "failed", "refused",
    "odd_reply", "lost",
]  # fmt: skip

#: The inputs that mean something in each state; every other one is a
#: violation that drops the source ("lost" never is).
MEANINGFUL = {
    "created": {"send", "lost"},
    "requested": {"header", "refused", "lost"},
    "receiving": {"body_done", "lost"},
    "writing": {"verified", "failed", "lost"},
    "verified": {"lost"},
    "failed": {"lost"},
}


@pytest.mark.parametrize("state", list(PATHS))
@pytest.mark.parametrize("given", INPUTS)
def test_every_state_and_input(state: str, given: str) -> None:
    verbs = Verbs()
    machine = new_request(verbs, {"type": "get", "id": 1})
    for step in PATHS[state]:
        getattr(machine, step)()
    sent = list(verbs.sent)
    assert not verbs.dropped
    result = getattr(machine, given)()
    violation = given not in MEANINGFUL[state]
    assert bool(verbs.dropped) == violation
    if given == "header":
        assert result is (not violation)
    if given == "send" and not violation:
        assert verbs.sent == [*sent, {"type": "get", "id": 1}]
    else:
        assert verbs.sent == sent


def test_nothing_is_accepted_after_a_violation() -> None:
    verbs = Verbs()
    machine = new_request(verbs, {"type": "get", "id": 1})
    machine.send()
    machine.header()
    machine.body_done()
    assert machine.header() is False
    assert machine.header() is False
    machine.verified()
    assert len(verbs.dropped) == 3


def test_the_plan_and_the_machine_import_no_reactor() -> None:
    pure = [plan.__name__, request.__name__]
    probe = (
        "import importlib, sys\n"
        f"for name in {pure!r}:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(m for m in sys.modules if m.startswith('twisted.internet')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


class Target:
    """A store target that only records what reached it."""

    def __init__(self, index: int, length: int) -> None:
        self.index, self.length = index, length
        self.error: Exception | None = None
        self.written = b""

    def write(self, index: int, data: memoryview) -> None:
        self.written += bytes(data)


class QueuedClock(Clock):
    """A fake clock that runs what the writer thread reports when drained."""

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[Any] = []

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.reports.append((f, args, kwargs))

    def drain(self, connection: SourceConnection) -> None:
        """Let the writer thread finish, then run its reports in order."""
        connection._worker.stop()
        connection._worker._thread.join(5)
        while self.reports:
            f, args, kwargs = self.reports.pop(0)
            f(*args, **kwargs)


def connected() -> tuple[SourceConnection, StringTransport, QueuedClock]:
    clock = QueuedClock()
    connection = SourceConnection("c", clock, 10.0, "s")
    transport = StringTransport()
    connection.makeConnection(transport)
    connection.welcomed.addErrback(lambda _: None)
    connection.dataReceived(
        encode({"type": "welcome", "id": 1, "version": 1, "name": "s"})
    )
    return connection, transport, clock


MANIFEST = Manifest("f", 2 * MIN_CHUNK_SIZE, "0" * 64, ("1" * 64, "2" * 64))


def header(request_id: int, length: int = MIN_CHUNK_SIZE, index: int = -1) -> bytes:
    index = request_id - 2 if index < 0 else index
    return encode({"type": "chunk", "id": request_id, "index": index, "length": length})


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(lambda: header(99), id="unknown id"),
        pytest.param(lambda: header(2, 5), id="wrong length"),
        pytest.param(lambda: header(2, index=1), id="wrong chunk"),
        pytest.param(
            lambda: encode({"type": "welcome", "id": 2, "version": 1, "name": "s"}),
            id="a welcome for a get",
        ),
        pytest.param(
            lambda: header(2) + bytes(MIN_CHUNK_SIZE) + header(2), id="answered twice"
        ),
    ],
)
def test_a_header_not_awaited_drops_the_source_before_any_byte(attack: Any) -> None:
    assert chunk_size_for(MANIFEST.size) == MIN_CHUNK_SIZE
    connection, transport, _ = connected()
    targets = [Target(i, MIN_CHUNK_SIZE) for i in (0, 1)]
    outcomes: list[Any] = []
    for target in targets:
        connection.fetch_chunk(MANIFEST, target, lambda t: True).addBoth(
            outcomes.append
        )
    connection.dataReceived(attack() + b"garbage" * 100)
    assert transport.disconnecting
    assert connection.violation is not None
    assert [m["code"] for m in frames(transport.value()) if m["type"] == "error"] == [
        "bad_request"
    ]
    clock = connection._reactor
    connection.connectionLost(None)  # type: ignore[arg-type]
    clock.drain(connection)
    assert b"garbage" not in targets[0].written + targets[1].written
    assert len(outcomes) == 2
    for outcome in outcomes:
        outcome.trap(SourceViolationError)


def test_pipelined_chunks_reach_their_own_targets() -> None:
    connection, transport, clock = connected()
    targets = [Target(i, MIN_CHUNK_SIZE) for i in (0, 1)]
    accepted: list[Any] = []
    results: list[Any] = []
    for target in targets:
        connection.fetch_chunk(MANIFEST, target, accepted.append).addBoth(
            results.append
        )
    gets = [m for m in frames(transport.value()) if m["type"] == "get"]
    assert [(m["id"], m["index"]) for m in gets] == [(2, 0), (3, 1)]
    connection.dataReceived(
        header(3) + b"b" * MIN_CHUNK_SIZE + header(2) + b"a" * MIN_CHUNK_SIZE
    )
    clock.drain(connection)
    assert targets[0].written == b"a" * MIN_CHUNK_SIZE
    assert targets[1].written == b"b" * MIN_CHUNK_SIZE
    assert accepted == [targets[1], targets[0]]
    assert results == [None, None]
    assert connection.violation is None
