"""One chunk request from a downloader to one source, as an explicit state machine.

A request is I{created}, then I{requested} once its ``get`` is sent. Its
``chunk`` header moves it to I{receiving}; once its last byte went to the
store it is I{writing} (a writer thread may still hold bytes), and it ends
I{verified} or I{failed}. A ``chunk`` header anywhere but I{requested} (the
request was answered already, or its bytes are still arriving or being
written), or for another chunk or length, is a violation: the machine tells
its connection to drop the source, which the download then bans, and the
header's bytes never reach the file. Every other input with no meaning in a
state is refused the same way, by rule.

One machine lives for one request. It reaches its connection only through
L{SourceVerbs} (C{send}, C{drop}) and imports nothing from C{twisted.internet}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from automat import TypeMachineBuilder

from redesdl.machines.indexed import indexed
from redesdl.machines.rules import refuse_the_rest

#: Every state, with what it means (the generated docs use these lines).
STATES = {
    "created": "not sent yet",
    "requested": "get sent; the only state that accepts a chunk header",
    "receiving": "the chunk's raw bytes are arriving and go to its store writer",
    "writing": "every byte received; the writer thread is finishing, then verify",
    "verified": "the store verified the chunk; nothing more is accepted for it",
    "failed": "error reply, hash mismatch, hang-up or violation; nothing more",
}
#: Outputs that only refuse (drawn in the docs' table, not as edges).
REFUSALS = frozenset({"out_of_order"})


class SourceVerbs(Protocol):
    """What a request may do to its connection."""

    def send(self, message: Any) -> None:
        """Send C{message} (a typed message) to the source."""

    def drop(self, why: str) -> None:
        """Hang up on the source: it broke the protocol."""


class ChunkRequest(Protocol):
    """The inputs of a request, fed by its connection."""

    def send(self) -> None:
        """Ask the source for the chunk."""

    def header(self) -> bool:
        """A ``chunk`` header for this request's chunk and length; True if awaited."""

    def mismatched(self) -> None:
        """A ``chunk`` header for this request, but another chunk or length."""

    def body_done(self) -> None:
        """The chunk's last byte went to the store."""

    def verified(self) -> None:
        """The store verified the chunk."""

    def failed(self) -> None:
        """The chunk did not verify or could not be written."""

    def refused(self) -> None:
        """The source answered with an error."""

    def odd_reply(self) -> None:
        """The source answered with a message that is no answer to a ``get``."""

    def lost(self) -> None:
        """The connection ended."""


@dataclass
class RequestCore:
    """What a request knows: its connection's verbs and its ``get``."""

    verbs: SourceVerbs
    message: Any
    violation: str | None = None


def _violation(core: RequestCore, why: str) -> None:
    core.violation = why
    core.verbs.drop(why)


builder = TypeMachineBuilder(ChunkRequest, RequestCore)
created = builder.state("created")
requested = builder.state("requested")
receiving = builder.state("receiving")
writing = builder.state("writing")
verified = builder.state("verified")
failed = builder.state("failed")


def send_get(request: ChunkRequest, core: RequestCore) -> None:
    core.verbs.send(core.message)


def header_not_awaited(request: ChunkRequest, core: RequestCore) -> bool:
    _violation(core, "a chunk header for a request not awaiting one")
    return False


def header_mismatched(request: ChunkRequest, core: RequestCore) -> None:
    _violation(core, "a chunk header of the wrong index or length")


def answered_twice(request: ChunkRequest, core: RequestCore) -> None:
    _violation(core, "an error reply for a request already answered")


def not_a_chunk(request: ChunkRequest, core: RequestCore) -> None:
    _violation(core, "a reply to a get that is neither a chunk nor an error")


def out_of_order(request: ChunkRequest, core: RequestCore) -> None:
    _violation(core, "a chunk request event out of order")


created.upon(ChunkRequest.send).to(requested)(send_get)
requested.upon(ChunkRequest.header).to(receiving).returns(True)
receiving.upon(ChunkRequest.body_done).to(writing).returns(None)
writing.upon(ChunkRequest.verified).to(verified).returns(None)
writing.upon(ChunkRequest.failed).to(failed).returns(None)
requested.upon(ChunkRequest.refused).to(failed).returns(None)
requested.upon(ChunkRequest.odd_reply).to(failed)(not_a_chunk)
for _state in (requested, receiving, writing):
    _state.upon(ChunkRequest.lost).to(failed).returns(None)
    _state.upon(ChunkRequest.mismatched).to(failed)(header_mismatched)
for _state in (created, verified, failed):
    _state.upon(ChunkRequest.lost).loop().returns(None)
for _state in (receiving, writing, verified, failed):
    _state.upon(ChunkRequest.header).to(failed)(header_not_awaited)
for _state in (receiving, writing):
    _state.upon(ChunkRequest.refused).to(failed)(answered_twice)

# By rule: anything else in any state drops the source.
INPUTS = [
    ChunkRequest.send,
    ChunkRequest.mismatched,
    ChunkRequest.body_done,
    ChunkRequest.verified,
    ChunkRequest.failed,
    ChunkRequest.refused,
    ChunkRequest.odd_reply,
]
refuse_the_rest(
    [created, requested, receiving, writing, verified, failed], INPUTS, out_of_order
)
refuse_the_rest([created], [ChunkRequest.header], header_not_awaited)

MACHINE = indexed(builder.build())


def new_request(verbs: SourceVerbs, message: Any) -> ChunkRequest:
    """A request in state I{created}; C{send()} sends C{message}."""
    return MACHINE(RequestCore(verbs, message))
