"""The chunk-session machine on a recording fake: every (state, message) pair, then
random conversations checked against the invariants that bound a connection."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from redesdl.machines import chunk_session
from redesdl.machines.chunk_session import (
    MACHINE,
    MAX_OWED,
    PAUSE_AT,
    STATES,
    WRITE_BUDGET,
    SessionCore,
)
from redesdl.machines.rules import state_of
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import (
    ChunkHeader,
    ClientHello,
    Error,
    Get,
    ManifestReply,
    ManifestRequest,
    Message,
    Ping,
)

SHA = "a" * 64
BLOCK = 1000
#: What a manifest reply costs in the fake transport: far over the budget.
MANIFEST_BYTES = 3 * WRITE_BUDGET


@dataclass(frozen=True)
class FakeManifest:
    name: str
    chunk_hashes: tuple[str, ...]
    chunk: int = 2500

    def chunk_range(self, index: int) -> tuple[int, int]:
        return index * self.chunk, self.chunk


@dataclass(frozen=True)
class FakeEntry:
    manifest: FakeManifest
    short: bool = False


ENTRIES = {
    "f": FakeEntry(FakeManifest("f", ("h0", "h1", "h2"))),
    "short": FakeEntry(FakeManifest("short", ("h0",)), short=True),
    "gone": FakeEntry(FakeManifest("gone", ("h0",))),
}


class FakeWriter:
    """A chunk of C{length} bytes written in blocks of L{BLOCK}."""

    def __init__(self, verbs: RecordingVerbs, entry: FakeEntry, length: int) -> None:
        self._verbs = verbs
        self._entry = entry
        self.remaining = length
        self.closed = False

    @property
    def done(self) -> bool:
        return not self.remaining

    def write_block(self) -> bool:
        assert not self.closed and self.remaining
        if self._entry.short:
            return False
        size = min(BLOCK, self.remaining)
        self.remaining -= size
        self._verbs.write_bytes(size)
        return True

    def close(self) -> None:
        self.closed = True
        self._verbs.open_writers.discard(self)


class RecordingVerbs:
    """The connection, as the machine sees it, with a transport that never sends
    by itself: the test says when the peer reads (then the transport drains)."""

    def __init__(self) -> None:
        self.session: Any = None
        self.frames: list[Message] = []
        self.unsent = 0
        self.chunk_left = 0
        self.watching = False
        self.reading = True
        self.hung_up: tuple[str, bool] | None = None
        self.silenced = False
        self.complaints: list[str] = []
        self.served_chunks = 0
        self.open_writers: set[FakeWriter] = set()
        self.closed = False

    def check_open(self) -> None:
        assert not self.closed, "a verb after the connection closed"
        assert self.hung_up is None and not self.silenced, "a verb after hanging up"

    # The verbs.

    def welcome(self, hello: ClientHello) -> None:
        self.send(Error("welcome", "", hello.id))  # stands in for the welcome

    def find(self, request: ManifestRequest | Get) -> FakeEntry:
        entry = ENTRIES.get(request.name)
        if entry is None:
            raise ProtocolError("not_found", "no such file")
        return entry

    def send(self, message: Message) -> None:
        self.check_open()
        assert not self.chunk_left, "a frame inside a chunk's bytes"
        self.frames.append(message)
        self.unsent += MANIFEST_BYTES if isinstance(message, ManifestReply) else 100
        if isinstance(message, ChunkHeader):
            self.chunk_left = message.length

    def write_bytes(self, size: int) -> None:
        self.check_open()
        assert size <= self.chunk_left
        self.chunk_left -= size
        self.unsent += size

    def unsent_bytes(self) -> int:
        return self.unsent

    def open_chunk(self, entry: FakeEntry, offset: int, length: int) -> FakeWriter:
        self.check_open()
        if entry.manifest.name == "gone":
            raise ProtocolError("not_found", "the file is gone")
        writer = FakeWriter(self, entry, length)
        self.open_writers.add(writer)
        return writer

    def served(self, entry: FakeEntry, length: int) -> None:
        self.served_chunks += 1

    def complain(self, kind: str, error: ProtocolError) -> None:
        self.complaints.append(error.code)

    def watch_drain(self) -> None:
        assert not self.watching
        self.watching = True
        # Twisted asks a pull producer for data as soon as it is registered.
        self.session.drained()

    def unwatch_drain(self) -> None:
        assert self.watching
        self.watching = False

    def stop_reading(self) -> None:
        assert self.reading
        self.reading = False

    def start_reading(self) -> None:
        assert not self.reading
        self.reading = True

    def hang_up(self, error: ProtocolError, abort: bool) -> None:
        self.check_open()
        assert abort == bool(self.chunk_left), "abort exactly when inside a chunk"
        self.hung_up = (error.code, abort)
        self.watching = False

    def close_silent(self) -> None:
        self.silenced = True
        self.watching = False

    # What the peer does to the transport.

    def peer_reads(self) -> None:
        """The peer takes every byte; the transport tells its producer."""
        self.unsent = 0
        if self.watching:
            self.session.drained()


def new_session() -> tuple[Any, RecordingVerbs, SessionCore]:
    verbs = RecordingVerbs()
    core = SessionCore(
        verbs, max_refusals=32, routine_refusals=frozenset({"not_found"})
    )
    verbs.session = MACHINE(core)
    return verbs.session, verbs, core


def hello(i: int = 1) -> ClientHello:
    return ClientHello(i, "c")


def get(i: int, name: str = "f", index: int = 0) -> Get:
    return Get(i, name, SHA, index)


def manifest(i: int, name: str = "f") -> ManifestRequest:
    return ManifestRequest(i, name, SHA)


def into(state: str) -> tuple[Any, RecordingVerbs, SessionCore]:
    """A session driven into C{state} the way a peer would drive it."""
    session, verbs, core = new_session()
    if state != "awaiting_hello":
        session.hello(hello())
    if state in ("sending", "stalled"):
        session.get(get(2))
    if state == "stalled":
        for i in range(PAUSE_AT - 1):
            session.ping(Ping(10 + i))
    if state == "closing":
        session.broken(ProtocolError("bad_frame", "garbage"))
    if state == "closed":
        session.connection_lost()
    assert state_of(session) == state
    verbs.frames.clear()
    return session, verbs, core


MESSAGES = {
    "hello": lambda s: s.hello(hello(50)),
    "manifest": lambda s: s.manifest(manifest(50)),
    "get": lambda s: s.get(get(50)),
    "ping": lambda s: s.ping(Ping(50)),
    "malformed": lambda s: s.malformed(
        "get", ProtocolError("bad_request", "'index' is missing"), 50
    ),
}
QUEUED = "queued, nothing written"
IGNORED = "ignored"
#: (state, message) -> (next state, what went out at once).
TABLE = {
    ("awaiting_hello", "hello"): ("serving", ["welcome"]),
    ("awaiting_hello", "manifest"): ("awaiting_hello", ["error hello_first"]),
    ("awaiting_hello", "get"): ("awaiting_hello", ["error hello_first"]),
    ("awaiting_hello", "ping"): ("awaiting_hello", ["error hello_first"]),
    ("awaiting_hello", "malformed"): ("awaiting_hello", ["error bad_request"]),
    ("serving", "hello"): ("serving", ["error bad_request"]),
    ("serving", "manifest"): ("serving", ["manifest"]),
    ("serving", "get"): ("sending", ["chunk"]),
    ("serving", "ping"): ("serving", ["pong"]),
    ("serving", "malformed"): ("serving", ["error bad_request"]),
    **{("sending", m): ("sending", QUEUED) for m in MESSAGES},
    **{("stalled", m): ("stalled", QUEUED) for m in MESSAGES},
    **{("closing", m): ("closing", IGNORED) for m in MESSAGES},
    **{("closed", m): ("closed", IGNORED) for m in MESSAGES},
}


def described(message: Message) -> str:
    if isinstance(message, Error):
        return "welcome" if message.code == "welcome" else f"error {message.code}"
    return message.TYPE


def test_the_table_covers_every_state_and_message() -> None:
    assert {state for state, _ in TABLE} == set(STATES)
    assert len(TABLE) == len(STATES) * len(MESSAGES)


@pytest.mark.parametrize(("state", "kind"), sorted(TABLE))
def test_every_message_in_every_state(state: str, kind: str) -> None:
    session, verbs, core = into(state)
    owed = len(core.owed)
    MESSAGES[kind](session)
    next_state, outcome = TABLE[state, kind]
    assert state_of(session) == next_state
    if outcome == QUEUED:
        assert verbs.frames == [] and len(core.owed) == owed + 1
    elif outcome == IGNORED:
        assert verbs.frames == [] and not core.owed
    else:
        assert [described(m) for m in verbs.frames] == outcome
        assert all(getattr(m, "id", 50) == 50 for m in verbs.frames)


def test_a_manifest_over_the_budget_waits_for_the_transport_to_drain() -> None:
    session, verbs, core = into("serving")
    for i in range(3):
        session.manifest(manifest(10 + i))
    assert [m.id for m in verbs.frames] == [10]  # type: ignore[attr-defined]
    assert state_of(session) == "sending" and len(core.owed) == 2
    verbs.peer_reads()
    verbs.peer_reads()
    assert [m.id for m in verbs.frames] == [10, 11, 12]  # type: ignore[attr-defined]
    assert state_of(session) == "serving" and not verbs.watching


def test_a_peer_that_does_not_read_is_no_longer_read_then_cut_off() -> None:
    session, verbs, core = into("serving")
    session.get(get(2))
    for i in range(PAUSE_AT - 1):
        session.manifest(manifest(10 + i))
    assert state_of(session) == "stalled" and not verbs.reading
    for i in range(MAX_OWED - PAUSE_AT):
        session.ping(Ping(100 + i))
    assert len(core.owed) == MAX_OWED and verbs.hung_up is None
    session.ping(Ping(999))
    assert verbs.hung_up == ("busy", True), "inside a chunk: cut off, no frame"
    assert state_of(session) == "closing" and not core.owed
    assert not verbs.open_writers
    session.timed_out()
    assert verbs.silenced


def test_a_busy_peer_between_chunks_is_told_why() -> None:
    session, verbs, _ = into("serving")
    verbs.unsent = WRITE_BUDGET + 1
    for i in range(MAX_OWED + 1):
        session.ping(Ping(10 + i))
    assert verbs.hung_up == ("busy", False)


def test_reading_resumes_once_the_peer_catches_up() -> None:
    session, verbs, _ = into("serving")
    session.get(get(2))
    for i in range(PAUSE_AT - 1):
        session.manifest(manifest(10 + i))
    assert state_of(session) == "stalled"
    while state_of(session) == "stalled":
        verbs.peer_reads()
    assert state_of(session) == "sending" and verbs.reading
    while state_of(session) == "sending":
        verbs.peer_reads()
    assert state_of(session) == "serving" and verbs.served_chunks == 1


def test_a_file_shorter_than_its_manifest_aborts_mid_chunk() -> None:
    session, verbs, _ = into("serving")
    session.get(get(2, "short"))
    assert [described(m) for m in verbs.frames] == ["chunk"]
    assert verbs.hung_up == ("internal", True)
    assert state_of(session) == "closing" and not verbs.open_writers


def test_a_vanished_file_is_not_found_and_the_session_goes_on() -> None:
    session, verbs, _ = into("serving")
    session.get(get(2, "gone"))
    assert [described(m) for m in verbs.frames] == ["error not_found"]
    assert state_of(session) == "serving"


def test_too_many_refusals_hang_up() -> None:
    session, verbs, _ = into("serving")
    for i in range(32):
        session.malformed("get", ProtocolError("bad_request", "no"), i)
    assert verbs.hung_up is None
    session.malformed("get", ProtocolError("bad_request", "no"), 99)
    assert verbs.hung_up == ("bad_request", False)


def test_losing_the_connection_closes_every_file() -> None:
    session, verbs, _ = into("sending")
    assert verbs.open_writers
    session.connection_lost()
    assert state_of(session) == "closed" and not verbs.open_writers


def test_a_chunk_is_counted_when_its_last_byte_leaves_not_at_the_next_drain() -> None:
    """Peers that hung up right after their chunk went uncounted: 200 chunks
    served, 97 counted."""
    session, verbs, _ = into("serving")
    session.get(get(2))
    while verbs.served_chunks == 0:
        verbs.peer_reads()
    assert state_of(session) == "sending"
    session.connection_lost()
    assert verbs.served_chunks == 1 and not verbs.open_writers


def test_a_chunk_whose_last_block_left_on_a_timer_is_counted_at_hang_up() -> None:
    """With a rate limit the last block goes out on a timer, after the last
    drain: a peer hanging up then was still missed."""
    session, verbs, core = into("serving")
    session.get(get(2))
    (chunk,) = core.owed
    chunk.writer.remaining = 0  # what the limiter's timer did
    session.connection_lost()
    assert verbs.served_chunks == 1 and not verbs.open_writers


def test_the_machine_does_not_import_twisted_internet() -> None:
    tree = ast.parse(Path(chunk_session.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [name for name in imported if name and "twisted" in name]


class ChunkSessionStateful(RuleBasedStateMachine):
    """Random conversations; the invariants are what bounds a connection."""

    @initialize()
    def connect(self) -> None:
        self.session, self.verbs, self.core = new_session()
        self.next_id = 1
        self.asked: list[int] = []
        self.max_unsent = 0

    def _ask(self, send: Any) -> None:
        request_id = self.next_id
        self.next_id += 1
        if state_of(self.session) not in ("closing", "closed"):
            self.asked.append(request_id)
        send(request_id)

    @rule()
    def hello(self) -> None:
        self._ask(lambda i: self.session.hello(hello(i)))

    @rule(name=st.sampled_from(["f", "missing"]))
    def manifest(self, name: str) -> None:
        self._ask(lambda i: self.session.manifest(manifest(i, name)))

    @rule(name=st.sampled_from(["f", "f", "missing", "gone"]), index=st.integers(0, 3))
    def get(self, name: str, index: int) -> None:
        self._ask(lambda i: self.session.get(get(i, name, index)))

    @rule()
    def ping(self) -> None:
        self._ask(lambda i: self.session.ping(Ping(i)))

    @rule()
    def malformed(self) -> None:
        error = ProtocolError("bad_request", "bad field")
        self._ask(lambda i: self.session.malformed("get", error, i))

    @rule(times=st.integers(1, 5))
    def peer_reads(self, times: int) -> None:
        for _ in range(times):
            self.verbs.peer_reads()

    @rule(
        event=st.sampled_from(["timed_out", "broken", "lost"]), dice=st.integers(0, 9)
    )
    def end(self, event: str, dice: int) -> None:
        """Now and then the conversation ends (rarely, so most run long)."""
        if dice:
            return
        if event == "timed_out":
            self.session.timed_out()
        elif event == "broken":
            self.session.broken(ProtocolError("bad_frame", "garbage"))
        else:
            self.session.connection_lost()
            self.verbs.closed = True

    @rule()
    def peer_reads_everything(self) -> None:
        for _ in range(10 * MAX_OWED):
            if state_of(self.session) not in ("sending", "stalled"):
                break
            self.verbs.peer_reads()
        state = state_of(self.session)
        assert state not in ("sending", "stalled"), "a reader is always caught up"
        if state in ("serving", "awaiting_hello"):
            self.check_replies(complete=True)

    def check_replies(self, complete: bool = False) -> None:
        answered = [
            m.id  # type: ignore[attr-defined]
            for m in self.verbs.frames
            if getattr(m, "id", None) is not None
        ]
        assert answered == self.asked[: len(answered)], "replies in request order"
        if complete:
            assert answered == self.asked, "every request answered"

    @invariant()
    def bounded(self) -> None:
        if not hasattr(self, "core"):
            return
        assert len(self.core.owed) <= MAX_OWED
        self.max_unsent = max(self.max_unsent, self.verbs.unsent)
        assert self.verbs.unsent <= WRITE_BUDGET + MANIFEST_BYTES + BLOCK + 100

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "core"):
            return
        state = state_of(self.session)
        self.check_replies()
        if state in ("closing", "closed"):
            assert not self.core.owed and not self.verbs.open_writers
            return
        assert self.verbs.reading == (state != "stalled")
        assert self.verbs.watching == (state in ("sending", "stalled"))
        assert bool(self.core.owed) == (state in ("sending", "stalled"))
        if state == "stalled":
            assert len(self.core.owed) >= 1


ChunkSessionStateful.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None
)
test_random_conversations = ChunkSessionStateful.TestCase
