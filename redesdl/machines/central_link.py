"""The secondary's link to the central, as an explicit state machine.

A secondary takes orders (``replicate``, ``verify``, ``withdraw``) that write
to its data folder and spend its disk and CPU, so it must take them only from a central
it has accepted: one that answered its ``hello`` with a ``welcome`` and, when
the cluster has a secret, proved it holds it. The machine makes that a
property of the table: only ``registered`` has transitions for orders, and
every other state refuses them by rule (the link hangs up, logs one line, and
asks again only after a pause).

One machine lives for one connection. Its inputs are the messages a
secondary can receive from the central (L{redesdl.protocol.wire.
SECONDARY_FROM_CENTRAL}), the connection's events and its timers, and three
verdicts the machine feeds itself after checking a message (L{LinkInputs.
answered}, L{LinkInputs.trusted}, L{LinkInputs.give_up}), so that every
transition has one target. It reaches the world only through L{LinkWorld}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from automat import TypeMachineBuilder

from redesdl.machines.indexed import indexed
from redesdl.machines.rules import refuse_the_rest
from redesdl.protocol.auth import ClusterSecret, is_nonce
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import (
    Auth,
    Catalog,
    Challenge,
    Error,
    Located,
    Message,
    Ping,
    Pong,
    Replicate,
    SecondaryHello,
    Verify,
    Welcome,
    Withdraw,
)

#: Every state, with what it means (the generated docs use these lines).
STATES = {
    "connecting": "TCP is not up yet",
    "hello_sent": "hello sent; waiting for the central's challenge or welcome",
    "authenticating": "challenge answered; waiting for the central's welcome proof",
    "registered": "accepted (and the central proved the secret): orders are obeyed",
    "refused": "the central refused us or we refused it: hung up, ask again in 30 s",
    "closed": "the link is over (lost, or dropped to reconnect); nothing is read",
}
#: Outputs that only refuse (drawn in the docs' table, not as edges).
REFUSALS = frozenset(
    {
        "order_too_early",
        "out_of_place",
        "malformed_answer",
        "answer_malformed",
        "refused_by_central",
    }
)


class LinkWorld(Protocol):
    """What the link machine can do to its connection and its secondary."""

    def send(self, message: Message) -> None:
        """Send one message to the central."""

    def refuse(self, why: str) -> None:
        """Log C{why} in one line, hang up, and ask the central again only later."""

    def reconnect(self, why: str) -> None:
        """Log C{why}, drop the connection now; the service connects again."""

    def joined(self) -> None:
        """Report the whole catalog, start the heartbeats, say the link is up."""

    def replicate(self, order: Replicate) -> None:
        """Copy a file from the peers the central named."""

    def verify(self, order: Verify) -> None:
        """Hash our copy of a file again and report whether it is intact."""

    def withdraw(self, order: Withdraw) -> None:
        """Move our copy of a file removed from the cluster aside, unserved."""

    def warn(self, why: str) -> None:
        """Log a warning about something the central said."""

    def refuse_message(
        self, kind: str, error: ProtocolError, request_id: int | None
    ) -> None:
        """Answer a message we will not act on with a typed error."""


class LinkInputs(Protocol):
    """Everything that can happen to the link: messages, events, verdicts."""

    def connection_made(self) -> None:
        "TCP is up."

    def welcome(self, message: Welcome) -> None:
        "The central accepts our hello (or our auth, with its own proof)."

    def challenge(self, message: Challenge) -> None:
        "The central asks us to prove we hold the cluster secret."

    def catalog(self, message: Catalog) -> None:
        "A catalog page (we never ask for one on this link)."

    def located(self, message: Located) -> None:
        "A locate answer (we never ask for one on this link)."

    def replicate(self, message: Replicate) -> None:
        "An order to copy a file from peers."

    def verify(self, message: Verify) -> None:
        "An order to hash a copy again."

    def withdraw(self, message: Withdraw) -> None:
        "An order to move a removed file's copy aside."

    def pong(self, message: Pong) -> None:
        "The answer to a heartbeat."

    def error(self, message: Error) -> None:
        "A typed error (any code but not_registered)."

    def not_registered(self, message: Error) -> None:
        "The central does not know this link (it was replaced): register again."

    def malformed(
        self, kind: str, error: ProtocolError, request_id: int | None
    ) -> None:
        "A message with a bad field, or of a type this receiver does not know."

    def heartbeat_due(self) -> None:
        "Time to send a ping."

    def silence(self) -> None:
        "The central said nothing for the heartbeat timeout."

    def connection_lost(self) -> None:
        "The connection closed, whoever closed it."

    def answered(self) -> None:
        "Verdict: the challenge was sound and our proof is sent."

    def trusted(self) -> None:
        "Verdict: the welcome answers our request and, with a secret, proves it."

    def give_up(self, why: str) -> None:
        "Verdict: we will not join (or stay with) this central, for C{why}."


@dataclass
class LinkCore:
    """One connection's facts: who we are, our secret, what we asked."""

    world: LinkWorld
    #: Our hello, with its id and (with a secret) our fresh nonce.
    hello: SecondaryHello
    secret: ClusterSecret | None
    heartbeat_timeout: float
    registered: bool = False
    their_nonce: str | None = None
    auth_id: int | None = None
    _last_id: int = 0

    def new_id(self) -> int:
        self._last_id = max(self._last_id, self.hello.id) + 1
        return self._last_id


#: The input each message type from the central becomes.
_MESSAGE_INPUTS: dict[type[Message], str] = {
    Welcome: "welcome",
    Challenge: "challenge",
    Catalog: "catalog",
    Located: "located",
    Replicate: "replicate",
    Verify: "verify",
    Withdraw: "withdraw",
    Pong: "pong",
}


def deliver(machine: LinkInputs, message: Message) -> None:
    """Call the input that C{message}, one of the central's, is."""
    if isinstance(message, Error):
        if message.code == "not_registered":
            machine.not_registered(message)
        else:
            machine.error(message)
        return
    getattr(machine, _MESSAGE_INPUTS[type(message)])(message)


# -- Outputs ----------------------------------------------------------------


def send_hello(inputs: LinkInputs, core: LinkCore) -> None:
    core.world.send(core.hello)


def answer_challenge(inputs: LinkInputs, core: LinkCore, message: Challenge) -> None:
    if message.id != core.hello.id:
        inputs.give_up("the central answered a request this secondary did not make")
    elif core.secret is None:
        inputs.give_up(
            "the central requires the cluster secret; start this secondary "
            "with --secret-file"
        )
    elif not is_nonce(message.nonce) or core.hello.nonce is None:
        inputs.give_up("the central's challenge is malformed")
    else:
        core.their_nonce = message.nonce
        core.auth_id = core.new_id()
        proof = core.secret.mac(
            "secondary", message.nonce, core.hello.nonce, core.hello.secondary_id
        )
        core.world.send(Auth(core.auth_id, proof))
        inputs.answered()


def check_open_welcome(inputs: LinkInputs, core: LinkCore, message: Welcome) -> None:
    if message.id != core.hello.id:
        inputs.give_up("the central answered a request this secondary did not make")
    elif core.secret is not None:
        inputs.give_up(
            "the central runs without a cluster secret; refusing to join an "
            "open cluster (drop --secret-file to join it anyway)"
        )
    else:
        inputs.trusted()


def check_proof(inputs: LinkInputs, core: LinkCore, message: Welcome) -> None:
    assert core.secret is not None and core.their_nonce is not None
    if message.id != core.auth_id:
        inputs.give_up("the central answered a request this secondary did not make")
    elif not core.secret.verify(
        message.proof, "central", core.hello.nonce or "", core.their_nonce
    ):
        inputs.give_up("the central could not prove it holds the cluster secret")
    else:
        inputs.trusted()


def register(inputs: LinkInputs, core: LinkCore) -> None:
    core.registered = True
    core.world.joined()


def leave(inputs: LinkInputs, core: LinkCore, why: str) -> None:
    verb = "leaving" if core.registered else "not registering with"
    core.registered = False
    core.world.refuse(f"{verb} the central: {why}")


def refused_by_central(inputs: LinkInputs, core: LinkCore, message: Error) -> None:
    inputs.give_up(f"the central refused this secondary: {message.message}")


def malformed_answer(
    inputs: LinkInputs, core: LinkCore, kind: str, error: ProtocolError, _: object
) -> None:
    inputs.give_up(f"the central's {kind!r} is malformed: {error.message}")


def answer_malformed(
    inputs: LinkInputs,
    core: LinkCore,
    kind: str,
    error: ProtocolError,
    request_id: int | None,
) -> None:
    core.world.refuse_message(kind, error, request_id)


def obey_replicate(inputs: LinkInputs, core: LinkCore, message: Replicate) -> None:
    core.world.replicate(message)


def obey_verify(inputs: LinkInputs, core: LinkCore, message: Verify) -> None:
    core.world.verify(message)


def obey_withdraw(inputs: LinkInputs, core: LinkCore, message: Withdraw) -> None:
    core.world.withdraw(message)


def note_error(inputs: LinkInputs, core: LinkCore, message: Error) -> None:
    core.world.warn(f"the central reported an error: {message.code}: {message.message}")


def send_ping(inputs: LinkInputs, core: LinkCore) -> None:
    core.world.send(Ping(core.new_id()))


def register_again(inputs: LinkInputs, core: LinkCore, message: Error) -> None:
    core.registered = False
    core.world.reconnect("the central does not know this secondary; registering again")


def reconnect_silent(inputs: LinkInputs, core: LinkCore) -> None:
    core.registered = False
    core.world.reconnect(
        f"the central said nothing for {core.heartbeat_timeout:g} s; reconnecting"
    )


def link_closed(inputs: LinkInputs, core: LinkCore) -> None:
    core.registered = False


def order_too_early(inputs: LinkInputs, core: LinkCore, *args: object) -> None:
    """The rule before registration: a message with no meaning yet is a violation."""
    inputs.give_up(
        f"the central sent {_kind(args)!r} before it accepted this secondary"
    )


def out_of_place(inputs: LinkInputs, core: LinkCore, *args: object) -> None:
    """The rule once registered: a message with no meaning here is a violation."""
    inputs.give_up(f"the central sent {_kind(args)!r}, which has no meaning now")


def ignore(inputs: LinkInputs, core: LinkCore, *args: object) -> None:
    """Hung up already, or an event with no meaning in this state: do nothing."""


def _kind(args: tuple[object, ...]) -> str:
    return args[0].TYPE if args and isinstance(args[0], Message) else "?"


# -- The table --------------------------------------------------------------

builder = TypeMachineBuilder(LinkInputs, LinkCore)
connecting = builder.state("connecting")
hello_sent = builder.state("hello_sent")
authenticating = builder.state("authenticating")
registered = builder.state("registered")
refused = builder.state("refused")
closed = builder.state("closed")
LIVE = [connecting, hello_sent, authenticating, registered]
JOINING = [connecting, hello_sent, authenticating]
#: Inputs that are messages from the central.
MESSAGES = [
    LinkInputs.welcome,
    LinkInputs.challenge,
    LinkInputs.catalog,
    LinkInputs.located,
    LinkInputs.replicate,
    LinkInputs.verify,
    LinkInputs.withdraw,
    LinkInputs.pong,
    LinkInputs.error,
    LinkInputs.not_registered,
    LinkInputs.malformed,
]
#: Inputs that come from the connection, the timers and the machine itself.
EVENTS = [
    LinkInputs.connection_made,
    LinkInputs.heartbeat_due,
    LinkInputs.silence,
    LinkInputs.connection_lost,
    LinkInputs.answered,
    LinkInputs.trusted,
    LinkInputs.give_up,
]

connecting.upon(LinkInputs.connection_made).to(hello_sent)(send_hello)

hello_sent.upon(LinkInputs.challenge).loop()(answer_challenge)
hello_sent.upon(LinkInputs.answered).to(authenticating).returns(None)
hello_sent.upon(LinkInputs.welcome).loop()(check_open_welcome)
hello_sent.upon(LinkInputs.trusted).to(registered)(register)

authenticating.upon(LinkInputs.welcome).loop()(check_proof)
authenticating.upon(LinkInputs.trusted).to(registered)(register)

for joining in (hello_sent, authenticating):
    joining.upon(LinkInputs.error).loop()(refused_by_central)
    joining.upon(LinkInputs.malformed).loop()(malformed_answer)

registered.upon(LinkInputs.replicate).loop()(obey_replicate)
registered.upon(LinkInputs.verify).loop()(obey_verify)
registered.upon(LinkInputs.withdraw).loop()(obey_withdraw)
registered.upon(LinkInputs.pong).loop().returns(None)
registered.upon(LinkInputs.error).loop()(note_error)
registered.upon(LinkInputs.malformed).loop()(answer_malformed)
registered.upon(LinkInputs.heartbeat_due).loop()(send_ping)
registered.upon(LinkInputs.not_registered).to(closed)(register_again)

for live in LIVE:
    live.upon(LinkInputs.give_up).to(refused)(leave)
    live.upon(LinkInputs.connection_lost).to(closed)(link_closed)
    if live is not connecting:
        live.upon(LinkInputs.silence).to(closed)(reconnect_silent)
refused.upon(LinkInputs.connection_lost).to(closed)(link_closed)

# By rule: after hanging up nothing is read; before registration any other
# message is a violation (an order above all); once registered too.
refuse_the_rest([refused, closed], MESSAGES, ignore)
refuse_the_rest(JOINING, MESSAGES, order_too_early)
refuse_the_rest([registered], MESSAGES, out_of_place)
refuse_the_rest([*LIVE, refused, closed], EVENTS, ignore)

MACHINE = indexed(builder.build())
