"""The central's session machine alone: every (state, message) pair, and random runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import redesdl.machines.central_session as central_session
import redesdl.machines.central_verbs as central_verbs
from redesdl.machines.central_session import INPUT_FOR_TYPE, MACHINE, STATES
from redesdl.protocol import wire

from .central_fakes import INFO, SECRET, TOKEN, Session

SHA = "a" * 64


def sample(kind: str, session: Session) -> wire.Message:
    """A well-formed message of type C{kind}, right for C{session}'s state."""
    proof = session.proof() if session.core.challenge is not None else "0" * 64
    return {
        "hello": wire.ClientHello(7, "bob", TOKEN),
        "auth": wire.Auth(7, proof),
        "list": wire.ListFiles(7),
        "locate": wire.Locate(7, "a.bin"),
        "admit": wire.Admit(7, "a.bin"),
        "report": wire.Report("a.bin", True, 10, 10),
        "bad_replica": wire.BadReplica("a.bin", SHA, "s1"),
        "progress": wire.Progress(7, "a.bin", 5, 1.0, 1),
        "files_added": wire.FilesAdded((INFO,)),
        "files_removed": wire.FilesRemoved(("a.bin",)),
        "catalog_done": wire.CatalogDone(),
        "replicated": wire.Replicated("a.bin", True),
        "verified": wire.Verified("a.bin", True),
        "activity": wire.Activity(()),
        "ping": wire.Ping(7),
    }[kind]


# What each message does in each state: the reply ("-" for none; HF, BR, FB
# for the errors hello_first, bad_request, forbidden), then ">STATE" when the
# state changes. docs/protocol.md states the same rules.
TABLE = """
type          hello        chal       sec     idle          queued  active        closed
hello         welcome>idle HF         BR      BR            BR      BR            BR
auth          HF           welcome>sec BR     BR            BR      BR            BR
list          HF           HF         catalog catalog       catalog catalog       BR
locate        HF           HF         located located       located located+ticket BR
admit         HF           HF         FB      queued>queued BR      BR            BR
report        HF           HF         FB      BR            BR      ->idle        BR
bad_replica   HF           HF         FB      FB            FB      -             BR
progress      HF           HF         FB      BR            BR      -             BR
files_added   HF           HF         -       FB            FB      FB            BR
files_removed HF           HF         -       FB            FB      FB            BR
catalog_done  HF           HF         -       FB            FB      FB            BR
replicated    HF           HF         -       FB            FB      FB            BR
verified      HF           HF         -       FB            FB      FB            BR
activity      HF           HF         -       FB            FB      FB            BR
ping          pong         pong       pong    pong          pong    pong          BR
"""
STATE_NAMES = {
    "hello": "awaiting_hello",
    "chal": "challenging",
    "sec": "registered_secondary",
    "idle": "client_idle",
    "queued": "client_queued",
    "active": "client_active",
    "closed": "closed",
}
ERRORS = {"HF": "hello_first", "BR": "bad_request", "FB": "forbidden"}


def expand(cell: str) -> str:
    reply, _, state = cell.partition(">")
    reply = f"error:{ERRORS[reply]}" if reply in ERRORS else reply
    return f"{reply}>{STATE_NAMES[state]}" if state else reply


def table() -> list[tuple[str, str, str]]:
    rows = [line.split() for line in TABLE.strip().splitlines()]
    states = [STATE_NAMES[short] for short in rows[0][1:]]
    return [
        (state, row[0], expand(cell))
        for row in rows[1:]
        for state, cell in zip(states, row[1:], strict=True)
    ]


def test_the_table_covers_every_state_and_every_message_type() -> None:
    pairs = {(state, kind) for state, kind, _ in table()}
    kinds = set(wire.CENTRAL_INBOUND) - {"error"}
    assert pairs == {(state, kind) for state in STATES for kind in kinds}
    assert set(INPUT_FOR_TYPE) == kinds


def describe(sent: list[wire.Message]) -> str:
    if not sent:
        return "-"
    [reply] = sent
    if isinstance(reply, wire.Error):
        return f"error:{reply.code}"
    if isinstance(reply, wire.Located) and reply.ticket is not None:
        return "located+ticket"
    return reply.TYPE


@pytest.mark.parametrize(("state", "kind", "expected"), table())
def test_each_message_in_each_state(state: str, kind: str, expected: str) -> None:
    session = Session(SECRET).reach(state)
    message = sample(kind, session)
    getattr(session.inputs, INPUT_FOR_TYPE[kind])(message)
    outcome = describe(session.connection.take())
    if session.state != state:
        outcome += f">{session.state}"
    assert outcome == expected


def test_the_table_is_complete_in_the_machine() -> None:
    transitions = list(MACHINE.__automat_automaton__.allTransitions())
    inputs = {an_input for _, an_input, _, _ in transitions}
    pairs = {(old.name, an_input) for old, an_input, _, _ in transitions}
    assert pairs == {(state, an_input) for state in STATES for an_input in inputs}


def test_the_machine_module_imports_no_reactor() -> None:
    modules = [central_session.__file__, central_verbs.__file__]
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for path in modules
        for node in ast.walk(ast.parse(Path(path).read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [name for name in imported if name and "twisted.internet" in name]
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, redesdl.machines.central_session; "
            "print([m for m in sys.modules if m.startswith('twisted.internet')])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


# -- Events --------------------------------------------------------------------

# The same for events (timers, the admission queue, the connection's end);
# SE is error:slot_expired.
EVENTS = """
event           hello   chal    sec     idle    queued          active     closed
slot_granted    -       -       -       -       admitted>active -          -
queue_moved     -       -       -       -       queued          -          -
slot_idle       -       -       -       -       -               SE>idle    -
silence         ->closed ->closed ->closed ->closed -           ->closed   -
replaced        -       -       ->closed -      -               -          -
connection_lost ->closed ->closed ->closed ->closed ->closed    ->closed   -
"""
ERRORS["SE"] = "slot_expired"


def event_table() -> list[tuple[str, str, str]]:
    rows = [line.split() for line in EVENTS.strip().splitlines()]
    states = [STATE_NAMES[short] for short in rows[0][1:]]
    return [
        (state, row[0], expand(cell))
        for row in rows[1:]
        for state, cell in zip(states, row[1:], strict=True)
    ]


@pytest.mark.parametrize(("state", "event", "expected"), event_table())
def test_each_event_in_each_state(state: str, event: str, expected: str) -> None:
    session = Session(SECRET).reach(state)
    args = {"slot_granted": (0.0,), "queue_moved": (2,)}.get(event, ())
    getattr(session.inputs, event)(*args)
    outcome = describe(session.connection.take())
    if session.state != state:
        outcome += f">{session.state}"
    assert outcome == expected
    if session.state == "closed":
        assert session.central.released == len(session.central.asked)


def test_the_slot_timer_takes_the_slot_back_with_a_typed_error() -> None:
    session = Session().reach("client_active")
    assert session.connection.slot_timer == 30.0
    session.inputs.slot_idle()
    [error] = session.connection.take()
    assert isinstance(error, wire.Error)
    assert (error.code, error.id) == ("slot_expired", 2)
    assert session.state == "client_idle"
    assert session.central.released == 1
    session.inputs.connection_lost()
    assert session.central.released == 1


def test_silence_closes_all_but_a_queued_client() -> None:
    for state in ("awaiting_hello", "client_idle", "client_active"):
        session = Session().reach(state)
        session.inputs.silence()
        assert session.state == "closed" and session.connection.hung_up
    queued = Session().reach("client_queued")
    assert queued.connection.silence is None
    queued.inputs.silence()
    assert queued.state == "client_queued"


def test_a_replaced_secondary_closes_without_unregistering_its_successor() -> None:
    session = Session().reach("registered_secondary")
    session.inputs.replaced()
    assert session.state == "closed" and session.connection.hung_up
    session.inputs.connection_lost()
    assert session.central.gone == []
    session.inputs.ping(wire.Ping(3))
    [error] = session.connection.take()
    assert isinstance(error, wire.Error) and error.code == "not_registered"


def test_a_refused_secondary_is_hung_up_on() -> None:
    session = Session(SECRET).reach("challenging")
    session.inputs.auth(wire.Auth(2, "0" * 64))
    [error] = session.connection.take()
    assert isinstance(error, wire.Error) and error.code == "unauthenticated"
    assert session.state == "closed" and session.connection.hung_up
    assert session.central.registered == []


def test_a_secondary_without_a_nonce_may_not_join_a_secret_cluster() -> None:
    session = Session(SECRET)
    session.inputs.hello(wire.SecondaryHello(1, "s1", "id-s1", 0, 7101))
    [error] = session.connection.take()
    assert isinstance(error, wire.Error) and error.code == "unauthenticated"
    assert session.state == "closed"


@pytest.mark.parametrize("name", ["\x1b[31mred", "bell\x07", "c1\x9b", ""])
def test_peer_names_with_control_characters_are_refused(name: str) -> None:
    session = Session()
    session.inputs.hello(wire.ClientHello(1, name, TOKEN))
    [error] = session.connection.take()
    assert isinstance(error, wire.Error) and error.code == "bad_request"
    assert session.state == "awaiting_hello"


# -- Random runs ---------------------------------------------------------------

NAMES = st.sampled_from(["a.bin", "b.bin", "nope.bin"])
SOURCES = st.sampled_from(["s1", "s2", "s3"])


class SessionRuns(RuleBasedStateMachine):
    """Random messages and events; the invariants hold after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.session = Session(SECRET)
        self.asked_before = 0

    def _send(self, message: wire.Message) -> None:
        getattr(self.session.inputs, INPUT_FOR_TYPE[message.TYPE])(message)
        replies = self.session.connection.take()
        # A request gets exactly one answer; anything else at most a refusal.
        request = getattr(message, "id", None) is not None
        assert len(replies) == 1 if request else len(replies) <= 1, replies
        for reply in replies:
            if isinstance(reply, wire.Located) and reply.ticket is not None:
                assert self.session.state == "client_active"
                assert self.session.core.slot is not None
                assert reply.file.name == self.session.core.slot.file

    @rule()
    def client_hello(self) -> None:
        self._send(wire.ClientHello(1, "alice", TOKEN))

    @rule()
    def secondary_hello(self) -> None:
        self._send(wire.SecondaryHello(1, "s1", "id-s1", 0, 7101, nonce="0" * 32))

    @rule(good=st.booleans())
    def auth(self, good: bool) -> None:
        proof = (
            self.session.proof()
            if good and self.session.core.challenge is not None
            else "0" * 64
        )
        self._send(wire.Auth(2, proof))

    @rule(name=NAMES)
    def locate(self, name: str) -> None:
        self._send(wire.Locate(3, name))

    @rule(name=NAMES)
    def admit(self, name: str) -> None:
        self._send(wire.Admit(4, name))

    @rule(name=NAMES, ok=st.booleans())
    def report(self, name: str, ok: bool) -> None:
        self._send(wire.Report(name, ok, 10, 10))

    @rule(name=NAMES, source=SOURCES)
    def bad_replica(self, name: str, source: str) -> None:
        before = len(self.session.central.complaints)
        active = self.session.state == "client_active"
        slot = self.session.core.slot
        self._send(wire.BadReplica(name, SHA, source))
        if len(self.session.central.complaints) > before:
            assert active and slot is not None and slot.file == name

    @rule(kind=st.sampled_from(["list", "files_added", "catalog_done", "activity"]))
    def other(self, kind: str) -> None:
        self._send(sample(kind, self.session))

    @rule()
    def ping(self) -> None:
        self._send(wire.Ping(5))

    @precondition(lambda self: self.session.central.waiting is not None)
    @rule()
    def grant(self) -> None:
        waiting = self.session.central.waiting
        self.session.central.waiting = None
        if self.session.state == "client_queued":
            waiting.slot_granted(1.0)  # type: ignore[union-attr]
            assert self.session.state == "client_active"
        self.session.connection.take()

    @rule(
        event=st.sampled_from(["slot_idle", "silence", "replaced", "connection_lost"])
    )
    def event(self, event: str) -> None:
        getattr(self.session.inputs, event)()
        self.session.connection.take()

    @invariant()
    def a_slot_is_released_once_per_ask(self) -> None:
        central = self.session.central
        held = len(central.asked) - central.released
        assert held == (1 if self.session.core.slot is not None else 0)

    @invariant()
    def a_registration_ends_once(self) -> None:
        central = self.session.central
        registered = len(central.registered) - len(central.gone)
        assert registered in (0, 1)
        if self.session.state == "closed":
            assert self.session.core.slot is None
            assert self.session.core.record is None
            assert self.session.connection.silence is None
            assert self.session.connection.slot_timer is None

    @invariant()
    def the_slot_timer_runs_only_while_active(self) -> None:
        running = self.session.connection.slot_timer is not None
        assert running == (self.session.state == "client_active")


TestSessionRuns = SessionRuns.TestCase
TestSessionRuns.settings = settings(
    max_examples=500, stateful_step_count=40, deadline=None
)


def test_fakes_are_what_the_machine_expects() -> None:
    # The fakes must not drift from the interfaces the machine declares.
    for name in ("send", "refuse", "hang_up", "watch_silence", "watch_slot"):
        assert hasattr(Session().connection, name)
    central: Any = Session().central
    for name in ("locate", "ask_slot", "release_slot", "bad_replica"):
        assert hasattr(central, name)
