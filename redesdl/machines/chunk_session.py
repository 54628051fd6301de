"""The chunk server's side of one connection, as an explicit state machine.

A downloader says ``hello``, then pipelines ``manifest``, ``get`` and
``ping`` requests. Every request is owed exactly one reply, in request
order, because a ``chunk`` header is followed by raw bytes that nothing may
interleave with. The machine keeps the replies it owes in one queue and
bounds what a connection may cost, whatever the peer does:

- a reply is written only while the transport holds at most
  L{WRITE_BUDGET} unsent bytes, and a chunk goes out one block per drain of
  the transport, so a peer that stops reading holds at most the budget plus
  one block or reply in the server's memory;
- after ``hello``, every reply (manifest, chunk, pong, error) counts against
  L{MAX_OWED}; a request beyond it is a peer that pipelines without reading:
  it is told ``busy`` (or simply cut off in the middle of a chunk) and hung up;
- while L{PAUSE_AT} replies or more are owed, the server stops reading the
  peer, so its next requests wait in its own socket until it has caught up.

Before ``hello`` nothing is queued: the welcome, or a ``hello_first`` error
(bounded by the refusal limit), goes out at once.

The machine reaches the connection only through L{ChunkSessionVerbs}; the
Twisted protocol (L{redesdl.secondary.chunkserver}) decodes, calls the inputs
of L{ChunkSession} and implements the verbs. The transition table is at the
bottom of this module.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from automat import TypeMachineBuilder

from redesdl.machines.indexed import indexed
from redesdl.machines.rules import refuse_the_rest
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
    Pong,
)

#: Most replies one connection may owe (queued, not yet written).
MAX_OWED = 64
#: Owing this many replies, the server stops reading the peer.
PAUSE_AT = 8
#: Unsent bytes in the transport above which no further reply is written
#: (the size at which Twisted itself pauses a streaming producer).
WRITE_BUDGET = 64 * 1024

STATES = {
    "awaiting_hello": "connected; only hello means anything yet",
    "serving": "said hello and owes nothing: a reply goes out at once",
    "sending": "owes replies: one block or reply goes out each time the "
    "transport drains; still reading requests",
    "stalled": f"owes {PAUSE_AT} replies or more: not reading the peer "
    "until it takes what it asked for",
    "closing": "hung up; waiting for the transport to close",
    "closed": "the connection is gone",
}


class ChunkSession(Protocol):
    """The inputs: one per message a downloader may send, and connection events."""

    def hello(self, message: ClientHello) -> None:
        "The peer introduces itself."

    def manifest(self, message: ManifestRequest) -> None:
        "The peer asks for a file's manifest."

    def get(self, message: Get) -> None:
        "The peer asks for one chunk."

    def ping(self, message: Ping) -> None:
        "The peer checks that the connection is alive."

    def malformed(
        self, kind: str, error: ProtocolError, request_id: int | None
    ) -> None:
        "A request the codec refused: a bad field or an unknown type."

    def broken(self, error: ProtocolError) -> None:
        "The stream cannot be read any further, or the session cannot go on."

    def drained(self) -> None:
        "The transport sent what it held: room for the next block or reply."

    def replies_waiting(self) -> None:
        "A reply could not go out at once (a chunk, or a full transport)."

    def peer_stopped_reading(self) -> None:
        "The server owes PAUSE_AT replies or more: the peer is not reading."

    def peer_reading_again(self) -> None:
        "The peer took enough replies to be read from again."

    def all_sent(self) -> None:
        "Every reply owed has been written."

    def timed_out(self) -> None:
        "The peer neither asked nor took anything for the idle timeout."

    def connection_lost(self) -> None:
        "The transport closed."


class ChunkWriter(Protocol):
    """One chunk's bytes on their way out, a block at a time."""

    @property
    def done(self) -> bool:
        "Every byte of the chunk has been written to the transport."

    def write_block(self) -> bool:
        """Write the next block, now or once the rate limit allows.

        False if the file could not be read (it is shorter than promised).
        """

    def close(self) -> None:
        "Release the file, cancel a block waiting for the rate limit."


class ChunkSessionVerbs(Protocol):
    """What the machine may do to its connection and its server."""

    def welcome(self, hello: ClientHello) -> None:
        "Remember the peer's name and write a welcome now."

    def find(self, request: ManifestRequest | Get) -> Any:
        "The index entry a request names, or raise a ProtocolError."

    def send(self, message: Message) -> None:
        "Write one frame now."

    def unsent_bytes(self) -> int:
        "Bytes written to the transport that it has not sent yet."

    def open_chunk(self, entry: Any, offset: int, length: int) -> ChunkWriter:
        "Open a byte range of a file for sending, or raise a ProtocolError."

    def served(self, entry: Any, length: int) -> None:
        "Count one chunk served."

    def complain(self, kind: str, error: ProtocolError) -> None:
        "Log (rate-limited) that a request was refused."

    def watch_drain(self) -> None:
        "Call drained() each time the transport has sent what it held."

    def unwatch_drain(self) -> None:
        "Stop calling drained()."

    def stop_reading(self) -> None:
        "Read nothing more from the peer for now."

    def start_reading(self) -> None:
        "Read from the peer again."

    def hang_up(self, error: ProtocolError, abort: bool) -> None:
        "Close: tell the peer why and flush, or (abort) cut it off at once."

    def close_silent(self) -> None:
        "Close a connection that stayed silent too long."


@dataclass
class Reply:
    """A reply owed, ready to be written."""

    message: Message


@dataclass
class Chunk:
    """A chunk owed; its file is opened only when it reaches the head."""

    request: Get
    entry: Any
    offset: int
    length: int
    writer: ChunkWriter | None = None
    #: Whether its serving was counted (when its last byte left).
    counted: bool = False

    @property
    def started(self) -> bool:
        return self.writer is not None


@dataclass
class SessionCore:
    """What one session knows: its verbs, the replies it owes, its refusals."""

    verbs: ChunkSessionVerbs
    max_refusals: int
    routine_refusals: frozenset[str]
    owed: deque[Reply | Chunk] = field(default_factory=deque)
    refusals: int = 0

    def chunk_started(self) -> bool:
        """True from a chunk's header until the transport has sent its last byte."""
        return any(isinstance(item, Chunk) and item.started for item in self.owed)

    def mid_chunk(self) -> bool:
        """True while a chunk's header is out and not all of its bytes are."""
        return any(
            isinstance(item, Chunk) and item.writer is not None and not item.writer.done
            for item in self.owed
        )

    def count_served(self, chunk: Chunk) -> None:
        """Count C{chunk} served, once, as soon as its last byte left."""
        if not chunk.counted:
            chunk.counted = True
            self.verbs.served(chunk.entry, chunk.length)

    def release(self) -> None:
        """Close every open file and forget what was owed."""
        for item in self.owed:
            if isinstance(item, Chunk) and item.writer is not None:
                if item.writer.done:
                    # Its last block left on a timer (a rate limit), after
                    # the last drain: it was served all the same.
                    self.count_served(item)
                item.writer.close()
        self.owed.clear()


# -- What the transitions do ----------------------------------------------


def _refusal(
    inputs: ChunkSession,
    core: SessionCore,
    kind: str,
    error: ProtocolError,
    request_id: int | None,
) -> Reply | None:
    """The error reply to a refused request; None once the peer is hung up on."""
    if error.code not in core.routine_refusals:
        core.refusals += 1
        if core.refusals > core.max_refusals:
            inputs.broken(
                ProtocolError("bad_request", f"{core.max_refusals} requests refused")
            )
            return None
        core.verbs.complain(kind, error)
    return Reply(Error(error.code, error.message, request_id))


def _answer(
    inputs: ChunkSession, core: SessionCore, message: Message
) -> Reply | Chunk | None:
    """What a request is owed: its reply, or a typed error."""
    try:
        if isinstance(message, Ping):
            return Reply(Pong(message.id))
        if isinstance(message, ManifestRequest):
            return Reply(ManifestReply(message.id, core.verbs.find(message).manifest))
        if isinstance(message, Get):
            entry = core.verbs.find(message)
            if message.index >= len(entry.manifest.chunk_hashes):
                raise ProtocolError(
                    "bad_request", f"chunk {message.index} is past the end"
                )
            offset, length = entry.manifest.chunk_range(message.index)
            return Chunk(message, entry, offset, length)
        raise ProtocolError("bad_request", "hello was already said")
    except ProtocolError as e:
        return _refusal(inputs, core, message.TYPE, e, message.id)  # type: ignore[attr-defined]


def _owe(inputs: ChunkSession, core: SessionCore, item: Reply | Chunk | None) -> bool:
    """Queue a reply; hang up on a peer that already owes L{MAX_OWED}."""
    if item is None:
        return False
    if len(core.owed) >= MAX_OWED:
        inputs.broken(
            ProtocolError("busy", f"at most {MAX_OWED} replies queued per connection")
        )
        return False
    core.owed.append(item)
    return True


def _write_some(inputs: ChunkSession, core: SessionCore) -> None:
    """Write what the transport has room for: replies, or one block of a chunk."""
    verbs = core.verbs
    while core.owed:
        head = core.owed[0]
        if isinstance(head, Chunk) and head.writer is not None and head.writer.done:
            head.writer.close()
            core.owed.popleft()
            core.count_served(head)
            continue
        if verbs.unsent_bytes() > WRITE_BUDGET:
            return
        if isinstance(head, Reply):
            core.owed.popleft()
            verbs.send(head.message)
            continue
        if head.writer is None:
            try:
                head.writer = verbs.open_chunk(head.entry, head.offset, head.length)
            except ProtocolError as e:
                core.owed.popleft()
                verbs.send(Error(e.code, e.message, head.request.id))
                continue
            verbs.send(ChunkHeader(head.request.id, head.request.index, head.length))
        if not head.writer.write_block():
            inputs.broken(
                ProtocolError("internal", "the file is shorter than its manifest")
            )
        elif head.writer.done:
            # Counted as soon as its last byte is handed over, not when the
            # next drain pops it: a peer that hangs up at once was served too.
            core.count_served(head)
        return


def _welcome(inputs: ChunkSession, core: SessionCore, message: ClientHello) -> None:
    core.verbs.welcome(message)


def _refuse_before_hello(
    inputs: ChunkSession, core: SessionCore, message: Message
) -> None:
    # Nothing is owed before hello, and refusals here are bounded by
    # max_refusals: the error can go out at once.
    reply = _refusal(
        inputs,
        core,
        message.TYPE,
        ProtocolError("hello_first", "say hello first"),
        message.id,  # type: ignore[attr-defined]
    )
    if reply is not None:
        core.verbs.send(reply.message)


def _refuse_malformed_before_hello(
    inputs: ChunkSession,
    core: SessionCore,
    kind: str,
    error: ProtocolError,
    request_id: int | None,
) -> None:
    reply = _refusal(inputs, core, kind, error, request_id)
    if reply is not None:
        core.verbs.send(reply.message)


def _answer_now(inputs: ChunkSession, core: SessionCore, message: Message) -> None:
    _owe(inputs, core, _answer(inputs, core, message))
    _write_some(inputs, core)
    if core.owed:
        inputs.replies_waiting()


def _refuse_now(
    inputs: ChunkSession,
    core: SessionCore,
    kind: str,
    error: ProtocolError,
    request_id: int | None,
) -> None:
    _owe(inputs, core, _refusal(inputs, core, kind, error, request_id))
    _write_some(inputs, core)
    if core.owed:
        inputs.replies_waiting()


def _check_backlog(inputs: ChunkSession, core: SessionCore) -> None:
    if len(core.owed) >= PAUSE_AT:
        inputs.peer_stopped_reading()


def _answer_later(inputs: ChunkSession, core: SessionCore, message: Message) -> None:
    if _owe(inputs, core, _answer(inputs, core, message)):
        _check_backlog(inputs, core)


def _refuse_later(
    inputs: ChunkSession,
    core: SessionCore,
    kind: str,
    error: ProtocolError,
    request_id: int | None,
) -> None:
    if _owe(inputs, core, _refusal(inputs, core, kind, error, request_id)):
        _check_backlog(inputs, core)


def _answer_stalled(inputs: ChunkSession, core: SessionCore, message: Message) -> None:
    _owe(inputs, core, _answer(inputs, core, message))


def _refuse_stalled(
    inputs: ChunkSession,
    core: SessionCore,
    kind: str,
    error: ProtocolError,
    request_id: int | None,
) -> None:
    _owe(inputs, core, _refusal(inputs, core, kind, error, request_id))


def _send_more(inputs: ChunkSession, core: SessionCore) -> None:
    _write_some(inputs, core)
    if not core.owed:
        inputs.all_sent()


def _send_more_stalled(inputs: ChunkSession, core: SessionCore) -> None:
    _write_some(inputs, core)
    if not core.owed:
        inputs.all_sent()
    elif len(core.owed) < PAUSE_AT:
        inputs.peer_reading_again()


def _watch(inputs: ChunkSession, core: SessionCore) -> None:
    core.verbs.watch_drain()


def _pause(inputs: ChunkSession, core: SessionCore) -> None:
    core.verbs.stop_reading()


def _resume(inputs: ChunkSession, core: SessionCore) -> None:
    core.verbs.start_reading()


def _unwatch(inputs: ChunkSession, core: SessionCore) -> None:
    core.verbs.unwatch_drain()


def _unwatch_and_resume(inputs: ChunkSession, core: SessionCore) -> None:
    core.verbs.unwatch_drain()
    core.verbs.start_reading()


def _hang_up(inputs: ChunkSession, core: SessionCore, error: ProtocolError) -> None:
    # In the middle of a chunk an error frame would land inside its bytes.
    abort = core.mid_chunk()
    core.release()
    core.verbs.hang_up(error, abort)


def _close_silent(inputs: ChunkSession, core: SessionCore) -> None:
    core.release()
    core.verbs.close_silent()


def _cut_off(inputs: ChunkSession, core: SessionCore) -> None:
    core.verbs.close_silent()


def _forget(inputs: ChunkSession, core: SessionCore) -> None:
    core.release()


def _ignore(inputs: ChunkSession, core: SessionCore, *args: Any) -> None:
    """Nothing to do: the event has no meaning in this state."""


# -- The transition table -------------------------------------------------

builder = TypeMachineBuilder(ChunkSession, SessionCore)
awaiting_hello = builder.state("awaiting_hello")
serving = builder.state("serving")
sending = builder.state("sending")
stalled = builder.state("stalled")
closing = builder.state("closing")
closed = builder.state("closed")
LIVE = (awaiting_hello, serving, sending, stalled)
REQUESTS = (ChunkSession.manifest, ChunkSession.get, ChunkSession.ping)

awaiting_hello.upon(ChunkSession.hello).to(serving)(_welcome)
awaiting_hello.upon(ChunkSession.malformed).loop()(_refuse_malformed_before_hello)

for request in (*REQUESTS, ChunkSession.hello):
    serving.upon(request).loop()(_answer_now)
    sending.upon(request).loop()(_answer_later)
    stalled.upon(request).loop()(_answer_stalled)
serving.upon(ChunkSession.malformed).loop()(_refuse_now)
sending.upon(ChunkSession.malformed).loop()(_refuse_later)
stalled.upon(ChunkSession.malformed).loop()(_refuse_stalled)

serving.upon(ChunkSession.replies_waiting).to(sending)(_watch)
sending.upon(ChunkSession.drained).loop()(_send_more)
sending.upon(ChunkSession.peer_stopped_reading).to(stalled)(_pause)
sending.upon(ChunkSession.all_sent).to(serving)(_unwatch)
stalled.upon(ChunkSession.drained).loop()(_send_more_stalled)
stalled.upon(ChunkSession.peer_reading_again).to(sending)(_resume)
stalled.upon(ChunkSession.all_sent).to(serving)(_unwatch_and_resume)

for state in LIVE:
    state.upon(ChunkSession.broken).to(closing)(_hang_up)
    state.upon(ChunkSession.timed_out).to(closing)(_close_silent)
    state.upon(ChunkSession.connection_lost).to(closed)(_forget)
closing.upon(ChunkSession.timed_out).loop()(_cut_off)
closing.upon(ChunkSession.connection_lost).to(closed)(_forget)

INPUTS = (
    ChunkSession.hello,
    *REQUESTS,
    ChunkSession.malformed,
    ChunkSession.broken,
    ChunkSession.drained,
    ChunkSession.replies_waiting,
    ChunkSession.peer_stopped_reading,
    ChunkSession.peer_reading_again,
    ChunkSession.all_sent,
    ChunkSession.timed_out,
    ChunkSession.connection_lost,
)
# Before hello, any other request is refused with hello_first, by rule.
refuse_the_rest((awaiting_hello,), REQUESTS, _refuse_before_hello)
# Everything else is an event that means nothing in its state (a drain with
# nothing owed, a message after hanging up): ignored, by rule.
refuse_the_rest(
    (awaiting_hello, serving, sending, stalled, closing, closed), INPUTS, _ignore
)

MACHINE = indexed(builder.build())
