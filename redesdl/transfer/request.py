"""One chunk request to one source, as an explicit state machine.

A request is I{created}, then I{requested} once its ``get`` is sent. Its
``chunk`` header moves it to I{receiving}; once its last byte went to the
store it is I{writing} (a writer thread may still hold bytes), and it ends
I{verified} or I{failed}. A ``chunk`` header in any state but I{requested}
(the request was answered already, or its bytes are still arriving or being
written), or of the wrong length, has no transition: it is a violation, the
machine tells its source to drop, and the header's bytes never reach the file.

The machine knows its connection only through L{SourceVerbs}; it imports
nothing from C{twisted.internet}, so it is tested without a reactor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from automat import TypeMachineBuilder, pep614


class SourceVerbs(Protocol):
    """What a request may do to its connection."""

    def send(self, message: dict[str, Any]) -> None:
        """Send C{message} to the source."""

    def drop(self, why: str) -> None:
        """Hang up on the source: it broke the protocol."""


class ChunkRequest(Protocol):
    """The inputs of a request, fed by its connection."""

    def send(self) -> None:
        """Ask the source for the chunk."""

    def header(self) -> bool:
        """A ``chunk`` header of the right length; True if it was awaited."""

    def wrong_length(self) -> None:
        """A ``chunk`` header whose length is not the chunk's."""

    def body_done(self) -> None:
        """The chunk's last byte went to the store."""

    def verified(self) -> None:
        """The store verified the chunk."""

    def failed(self) -> None:
        """The chunk did not verify or could not be written."""

    def refused(self) -> None:
        """The source answered with an error."""

    def lost(self) -> None:
        """The connection ended."""


@dataclass
class RequestCore:
    """What a request knows: its connection's verbs and its ``get``."""

    verbs: SourceVerbs
    message: dict[str, Any]
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

#: States in which a request waits for nothing more.
FINAL = ("verified", "failed")


@pep614(created.upon(ChunkRequest.send).to(requested))
def _send(request: ChunkRequest, core: RequestCore) -> None:
    core.verbs.send(core.message)


requested.upon(ChunkRequest.header).to(receiving).returns(True)
receiving.upon(ChunkRequest.body_done).to(writing).returns(None)
writing.upon(ChunkRequest.verified).to(verified).returns(None)
writing.upon(ChunkRequest.failed).to(failed).returns(None)
requested.upon(ChunkRequest.refused).to(failed).returns(None)
for _state in (requested, receiving, writing):
    _state.upon(ChunkRequest.lost).to(failed).returns(None)
for _state in (created, verified, failed):
    _state.upon(ChunkRequest.lost).loop().returns(None)


def _unexpected_header(request: ChunkRequest, core: RequestCore) -> bool:
    _violation(core, "a chunk header for a request not awaiting one")
    return False


def _bad_length(request: ChunkRequest, core: RequestCore) -> None:
    _violation(core, "a chunk header of the wrong length")


def _answered_twice(request: ChunkRequest, core: RequestCore) -> None:
    _violation(core, "an error reply for a request already answered")


for _state in (receiving, writing, verified, failed):
    _state.upon(ChunkRequest.header).to(failed)(_unexpected_header)
for _state in (receiving, writing):
    _state.upon(ChunkRequest.refused).to(failed)(_answered_twice)
for _state in (requested, receiving, writing, verified, failed):
    _state.upon(ChunkRequest.wrong_length).to(failed)(_bad_length)

_build = builder.build()


def new_request(verbs: SourceVerbs, message: dict[str, Any]) -> ChunkRequest:
    """A request in state I{created}; C{send()} sends C{message}."""
    return _build(RequestCore(verbs, message))
