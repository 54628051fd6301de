"""The secondary's link machine, on a recording world: every pair, then random runs."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from redesdl.machines import central_link
from redesdl.machines.central_link import MACHINE, STATES, LinkCore, LinkInputs
from redesdl.machines.rules import state_of
from redesdl.protocol.auth import ClusterSecret
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import (
    Auth,
    Catalog,
    Challenge,
    Error,
    FileInfo,
    Located,
    Ping,
    Pong,
    Replicate,
    SecondaryHello,
    Verify,
    Welcome,
    Withdraw,
)

SECRET = ClusterSecret(b"s" * 32)
OURS, THEIRS = "0" * 32, "1" * 32
INFO = FileInfo("a.bin", 10, "a" * 64, "b" * 64)


class Recorder:
    """The world as the machine sees it, remembering every verb it used."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.core: LinkCore | None = None
        self.orders_while_unregistered = 0

    def send(self, message: Any) -> None:
        self.calls.append(("send", message))

    def refuse(self, why: str) -> None:
        self.calls.append(("refuse", why))

    def reconnect(self, why: str) -> None:
        self.calls.append(("reconnect", why))

    def joined(self) -> None:
        self.calls.append(("joined", None))

    def replicate(self, order: Replicate) -> None:
        self._order("replicate", order)

    def verify(self, order: Verify) -> None:
        self._order("verify", order)

    def withdraw(self, order: Withdraw) -> None:
        self._order("withdraw", order)

    def _order(self, kind: str, order: Any) -> None:
        assert self.core is not None
        if not self.core.registered:
            self.orders_while_unregistered += 1
        self.calls.append((kind, order))

    def warn(self, why: str) -> None:
        self.calls.append(("warn", why))

    def refuse_message(self, kind: str, error: Any, request_id: Any) -> None:
        self.calls.append(("refuse_message", (kind, error, request_id)))

    def verbs(self) -> list[str]:
        return [verb for verb, _ in self.calls]

    def take(self) -> list[str]:
        verbs = self.verbs()
        self.calls.clear()
        return verbs


def new_link(secret: ClusterSecret | None) -> tuple[LinkInputs, LinkCore, Recorder]:
    world = Recorder()
    hello = SecondaryHello(
        1, "s1", "id-s1", 1, 7101, nonce=OURS if secret is not None else None
    )
    core = LinkCore(world, hello, secret, heartbeat_timeout=15.0)
    world.core = core
    return MACHINE(core), core, world


def link_in(state: str, secret: ClusterSecret | None = SECRET) -> Any:
    """A machine driven, as the central would, into C{state}."""
    machine, core, world = new_link(secret)
    if state != "connecting":
        machine.connection_made()
    if state in ("authenticating", "registered"):
        machine.challenge(Challenge(1, THEIRS))
    if state == "registered":
        machine.welcome(Welcome(2, SECRET.mac("central", OURS, THEIRS)))
    if state == "refused":
        machine.error(Error("unauthenticated", "wrong cluster secret", 1))
    if state == "closed":
        machine.connection_lost()
    assert state_of(machine) == state
    world.calls.clear()
    return machine, core, world


def message_for(kind: str, state: str) -> tuple[Any, ...]:
    """A sound message of C{kind}, answering what C{state} waits for."""
    welcome_id = 2 if state == "authenticating" else 1
    return {
        "welcome": (Welcome(welcome_id, SECRET.mac("central", OURS, THEIRS)),),
        "challenge": (Challenge(1, THEIRS),),
        "catalog": (Catalog(1, (), False),),
        "located": (Located(1, INFO, ()),),
        "replicate": (Replicate(INFO, ()),),
        "verify": (Verify("a.bin", "a" * 64),),
        "withdraw": (Withdraw("a.bin", "a" * 64),),
        "pong": (Pong(3),),
        "error": (Error("bad_request", "no", 1),),
        "not_registered": (Error("not_registered", "who?", 3),),
        "malformed": (
            "replicate",
            ProtocolError("bad_request", "'file' missing"),
            None,
        ),
    }[kind]


MESSAGE_KINDS = [
    "welcome",
    "challenge",
    "catalog",
    "located",
    "replicate",
    "verify",
    "withdraw",
    "pong",
    "error",
    "not_registered",
    "malformed",
]
REFUSED = ("refused", ["refuse"])

#: (state, message type) -> (state after, verbs used), for a secondary with a secret.
TABLE: dict[tuple[str, str], tuple[str, list[str]]] = {
    **{("connecting", kind): REFUSED for kind in MESSAGE_KINDS},
    **{("hello_sent", kind): REFUSED for kind in MESSAGE_KINDS},
    ("hello_sent", "challenge"): ("authenticating", ["send"]),
    **{("authenticating", kind): REFUSED for kind in MESSAGE_KINDS},
    ("authenticating", "welcome"): ("registered", ["joined"]),
    ("registered", "welcome"): REFUSED,
    ("registered", "challenge"): REFUSED,
    ("registered", "catalog"): REFUSED,
    ("registered", "located"): REFUSED,
    ("registered", "replicate"): ("registered", ["replicate"]),
    ("registered", "verify"): ("registered", ["verify"]),
    ("registered", "withdraw"): ("registered", ["withdraw"]),
    ("registered", "pong"): ("registered", []),
    ("registered", "error"): ("registered", ["warn"]),
    ("registered", "not_registered"): ("closed", ["reconnect"]),
    ("registered", "malformed"): ("registered", ["refuse_message"]),
    **{("refused", kind): ("refused", []) for kind in MESSAGE_KINDS},
    **{("closed", kind): ("closed", []) for kind in MESSAGE_KINDS},
}


def test_the_table_covers_every_state_and_message_type() -> None:
    assert set(TABLE) == {(s, k) for s in STATES for k in MESSAGE_KINDS}
    edges = MACHINE.__automat_automaton__.allTransitions()
    assert {(old.name, name) for old, name, _, _ in edges} >= set(TABLE)
    assert {new.name for _, _, new, _ in edges} == set(STATES)


@pytest.mark.parametrize(("state", "kind"), sorted(TABLE))
def test_every_message_in_every_state(state: str, kind: str) -> None:
    machine, core, world = link_in(state)
    getattr(machine, kind)(*message_for(kind, state))
    after, verbs = TABLE[state, kind]
    assert (state_of(machine), world.verbs()) == (after, verbs)
    assert core.registered == (after == "registered")
    if verbs == ["refuse"] and state != "registered":
        assert world.calls[0][1].startswith("not registering with the central: ")


@pytest.mark.parametrize("order", ["replicate", "verify", "withdraw"])
@pytest.mark.parametrize("state", ["connecting", "hello_sent", "authenticating"])
def test_an_order_before_registration_is_refused_with_one_line(
    state: str, order: str
) -> None:
    machine, _, world = link_in(state)
    getattr(machine, order)(*message_for(order, state))
    [(verb, why)] = world.calls
    assert verb == "refuse"
    assert why == (
        f"not registering with the central: the central sent {order!r} "
        "before it accepted this secondary"
    )


def test_an_open_secondary_joins_on_welcome_and_refuses_a_challenge() -> None:
    machine, _, world = link_in("hello_sent", secret=None)
    machine.welcome(Welcome(1))
    assert (state_of(machine), world.take()) == ("registered", ["joined"])
    machine, _, world = link_in("hello_sent", secret=None)
    machine.challenge(Challenge(1, THEIRS))
    assert state_of(machine) == "refused"
    assert "requires the cluster secret" in world.calls[0][1]


@pytest.mark.parametrize(
    ("welcome", "why"),
    [
        (Welcome(2, ClusterSecret(b"f" * 32).mac("central", OURS, THEIRS)), "prove"),
        (Welcome(2), "prove"),
        (Welcome(1, SECRET.mac("central", OURS, THEIRS)), "did not make"),
    ],
)
def test_a_welcome_without_the_right_proof_is_refused(
    welcome: Welcome, why: str
) -> None:
    machine, _, world = link_in("authenticating")
    machine.welcome(welcome)
    assert state_of(machine) == "refused"
    [(verb, line)] = world.calls
    assert verb == "refuse" and why in line


def test_a_secondary_with_a_secret_refuses_an_open_central() -> None:
    machine, _, world = link_in("hello_sent")
    machine.welcome(Welcome(1))
    assert state_of(machine) == "refused"
    assert "refusing to join an open cluster" in world.calls[0][1]


def test_the_proof_answers_the_challenge() -> None:
    machine, _, world = link_in("hello_sent")
    machine.challenge(Challenge(1, THEIRS))
    [(_, auth)] = world.calls
    assert isinstance(auth, Auth) and auth.id == 2
    assert SECRET.verify(auth.proof, "secondary", THEIRS, OURS, "id-s1")


@pytest.mark.parametrize(
    ("state", "event", "after", "verbs"),
    [
        ("connecting", "connection_made", "hello_sent", ["send"]),
        ("hello_sent", "silence", "closed", ["reconnect"]),
        ("authenticating", "silence", "closed", ["reconnect"]),
        ("registered", "silence", "closed", ["reconnect"]),
        ("registered", "heartbeat_due", "registered", ["send"]),
        ("hello_sent", "heartbeat_due", "hello_sent", []),
        ("refused", "silence", "refused", []),
        *[(s, "connection_lost", "closed", []) for s in STATES],
    ],
)
def test_connection_events_and_timers(
    state: str, event: str, after: str, verbs: list[str]
) -> None:
    machine, _, world = link_in(state)
    getattr(machine, event)()
    assert (state_of(machine), world.verbs()) == (after, verbs)


def test_pings_carry_fresh_ids() -> None:
    machine, _, world = link_in("registered")
    machine.heartbeat_due()
    machine.heartbeat_due()
    assert [m for _, m in world.calls] == [Ping(3), Ping(4)]


def test_the_machine_is_pure() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(central_link))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not any(name and name.startswith("twisted") for name in imported)


class RandomCentral(RuleBasedStateMachine):
    """A central that says anything, in any order; the link must hold its line."""

    @initialize(with_secret=st.booleans())
    def start(self, with_secret: bool) -> None:
        self.secret = SECRET if with_secret else None
        self.new_connection()

    @precondition(lambda self: state_of(self.machine) in ("refused", "closed"))
    @rule()
    def new_connection(self) -> None:
        self.machine, self.core, self.world = new_link(self.secret)
        self.proven = False
        self.last_challenge: str | None = None

    @rule()
    def honest_step(self) -> None:
        """What a real central would say next, so that runs get deep."""
        state = state_of(self.machine)
        if state == "connecting":
            self.connect()
        elif state == "hello_sent" and self.secret is not None:
            self.challenge(1, THEIRS)
        elif state in ("hello_sent", "authenticating"):
            self.welcome(to_auth=True, proof="valid")
        elif state == "registered":
            self.other_message("replicate")

    def _auth(self) -> Auth | None:
        sent = [m for v, m in self.world.calls if v == "send" and isinstance(m, Auth)]
        return sent[-1] if sent else None

    @rule()
    def connect(self) -> None:
        self.machine.connection_made()

    @rule(
        request=st.sampled_from([1, 2, 9]),
        nonce=st.sampled_from([THEIRS, "2" * 32, "x"]),
    )
    def challenge(self, request: int, nonce: str) -> None:
        if state_of(self.machine) == "hello_sent":
            self.last_challenge = nonce
        self.machine.challenge(Challenge(request, nonce))

    @rule(
        to_auth=st.booleans(),
        proof=st.sampled_from(["valid", "forged", "none"]),
    )
    def welcome(self, to_auth: bool, proof: str) -> None:
        auth = self._auth()
        request = auth.id if to_auth and auth is not None else 1
        value = None
        if proof == "valid" and self.last_challenge is not None:
            value = SECRET.mac("central", OURS, self.last_challenge)
        elif proof == "forged":
            value = "f" * 64
        if (
            state_of(self.machine) == "authenticating"
            and auth is not None
            and request == auth.id
            and value is not None
            and value == SECRET.mac("central", OURS, self.last_challenge or "")
        ):
            self.proven = True
        self.machine.welcome(Welcome(request, value))

    @rule(kind=st.sampled_from(MESSAGE_KINDS[2:]))
    def other_message(self, kind: str) -> None:
        getattr(self.machine, kind)(*message_for(kind, "registered"))

    @rule(event=st.sampled_from(["heartbeat_due", "silence", "connection_lost"]))
    def event(self, event: str) -> None:
        getattr(self.machine, event)()

    @invariant()
    def orders_only_while_registered(self) -> None:
        assert self.world.orders_while_unregistered == 0

    @invariant()
    def with_a_secret_only_a_proven_central_is_joined(self) -> None:
        if self.secret is not None and "joined" in self.world.verbs():
            assert self.proven

    @invariant()
    def joined_at_most_once_and_nothing_after_hanging_up(self) -> None:
        verbs = self.world.verbs()
        assert verbs.count("joined") <= 1
        for end in ("refuse", "reconnect"):
            if end in verbs:
                assert verbs[verbs.index(end) + 1 :] == []

    @invariant()
    def registered_means_the_registered_state(self) -> None:
        state = state_of(self.machine)
        assert state in STATES
        assert self.core.registered == (state == "registered")

    @precondition(lambda self: self.secret is None)
    @invariant()
    def an_open_secondary_never_answers_a_challenge(self) -> None:
        assert not any(isinstance(m, Auth) for _, m in self.world.calls)


RandomCentral.TestCase.settings = settings(max_examples=200, stateful_step_count=30)
test_a_random_central = RandomCentral.TestCase
