"""The client's conversation with the central: hello, list, locate, admit, report.

Every reply is a typed message (L{redesdl.protocol.wire}, the
C{CLIENT_FROM_CENTRAL} vocabulary), checked for being the answer the request
expects. The central is not trusted to be sane: a catalog is streamed one
page at a time (so a listing of any size holds one page), each page must
bring names past the previous one's within a bounded number of pages,
entries whose names a terminal would obey are dropped, and a malformed or
unexpected answer fails the command with one line (L{BadCentralReplyError}),
never a traceback.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from redesdl.client.access import EPHEMERAL_TOKEN
from redesdl.client.errors import UserError
from redesdl.endpoints import connect_protocol
from redesdl.manifest import FileInfo
from redesdl.names import name_problem
from redesdl.protocol import wire
from redesdl.protocol.errors import ProtocolError, RemoteError
from redesdl.protocol.fields import items
from redesdl.protocol.sources import SourceAddress
from redesdl.shells.messages import MessageProtocol

#: Messages a person should see even without -v (the CLI shows this namespace).
notice = Logger(namespace="redesdl.notice")
#: Most pages one listing asks for (each must bring a name past the last one):
#: 25.6 million entries in full pages. It bounds how long a hostile central
#: can keep a listing going; memory is bounded by one page whatever the size.
MAX_LISTING_PAGES = 100_000

M = TypeVar("M", bound=wire.Message)


class BadCentralReplyError(UserError):
    """The central answered with something a client cannot use."""


class CentralSilentError(UserError):
    """The central did not answer a request in time; we hung up on it."""


class CentralBusyError(UserError):
    """The central turned the connection away (C{busy}: over its caps)."""


@dataclass(frozen=True)
class CatalogPage(wire.Catalog):
    """A catalog page as a client reads it, without names unsafe to show.

    A name with control characters (terminal escapes) or otherwise invalid
    is dropped, not refused, so one bad entry does not hide the others;
    C{skipped} counts them, and C{last_name} is the page's last name, shown
    or not, where the next page starts. An entry of the wrong shape refuses
    the page. A page without C{more} is the last one.
    """

    skipped: int = 0
    last_name: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> CatalogPage:
        files = items(body, "files", max_items=wire.MAX_FILES_PER_MESSAGE)
        shown = [entry for entry in files if not _unsafe_name(entry)]
        more = body.get("more", False)
        page = wire.Catalog.parse({**body, "files": shown, "more": more})
        ends = [entry["name"] for entry in files[-1:] if _unsafe_name(entry)]
        ends += [entry.info.name for entry in page.files[-1:]]
        last = max(ends, default=None)
        return cls(page.id, page.files, page.more, len(files) - len(shown), last)

    def to_wire(self) -> dict[str, Any]:
        return wire.Catalog(self.id, self.files, self.more).to_wire()


def _unsafe_name(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and name_problem(entry["name"]) is not None
    )


#: What a client accepts from the central, catalog pages read as above.
VOCABULARY = {**wire.CLIENT_FROM_CENTRAL, wire.Catalog.TYPE: CatalogPage.parse}


class CentralConnection(MessageProtocol):
    """Requests a client sends the central, each answered by one reply."""

    maxFrameLength = 256 * 1024
    vocabulary = VOCABULARY

    def __init__(
        self,
        clientName: str,
        token: str = EPHEMERAL_TOKEN,
        replyTimeout: float | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self._clientName = clientName
        self._token = token
        #: Seconds the central has to answer a request (an ``admit``: to
        #: answer it or say we are queued); None waits as long as it takes.
        self._reply_timeout = replyTimeout
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[assignment]
        self._clock: IReactorTime = clock
        self._deadlines: dict[int, IDelayedCall] = {}
        #: The admits waiting for their slot: only they may be ``queued``.
        self._admits: set[int] = set()
        #: While an admit waits in the queue, a ping every reply timeout: a
        #: central gone silent is found out there too.
        self._keepalive: LoopingCall | None = None
        #: Why we hung up, if the central let a request's deadline pass.
        self._silence: str | None = None
        #: Why we hung up, if the central broke the framing.
        self._violation: ProtocolError | None = None
        #: The latest download ticket the central gave for each file content.
        self._tickets: dict[str, wire.Ticket] = {}
        self._positionListeners: dict[int, Callable[[int], None]] = {}
        self._closed: Deferred[None] = Deferred()
        self.welcomed: Deferred[wire.Welcome] = Deferred()
        #: The central does not know ``progress`` (an older one): stop sending it.
        self.refuses_progress = False

    def connectionMade(self) -> None:
        super().connectionMade()
        hello = wire.ClientHello(self.allocateId(), self._clientName, self._token)
        Deferred.fromCoroutine(self._ask(hello, wire.Welcome)).chainDeferred(
            self.welcomed
        )

    async def _ask(self, message: wire.Message, expected: type[M]) -> M:
        """Send a request; return its reply if it is of the C{expected} type."""
        if self._closed.called:
            # Nothing would ever answer (a download's refresh after we hung up).
            if self._silence is not None:
                raise CentralSilentError(self._silence)
            raise ConnectionDone("the connection to the central is closed")
        waiting = self.request(message)
        request_id: int = message.id  # type: ignore[attr-defined]
        if self._reply_timeout is not None:
            self._deadlines[request_id] = self._clock.callLater(
                self._reply_timeout, self._no_answer, message.TYPE
            )
        try:
            reply = await waiting
        except RemoteError as e:
            if e.code == "busy":
                raise CentralBusyError(
                    f"the central at {self.peerDescription()} is busy: "
                    f"{e.message or 'try again later'}"
                ) from None
            raise
        except ProtocolError as e:
            raise BadCentralReplyError(
                f"the central's answer to {message.TYPE!r} is malformed: {e.message}"
            ) from None
        except (ConnectionDone, ConnectionLost):
            if self._silence is not None:
                raise CentralSilentError(self._silence) from None
            if self._violation is not None:
                raise BadCentralReplyError(
                    f"the central sent a malformed message ({self._violation.code}: "
                    f"{self._violation.message}); hung up on it"
                ) from None
            raise
        finally:
            self._answered(request_id)
        if not isinstance(reply, expected):
            raise BadCentralReplyError(
                f"the central answered {message.TYPE!r} with {reply.TYPE!r}"
            )
        return reply

    def _answered(self, request_id: int) -> None:
        deadline = self._deadlines.pop(request_id, None)
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _no_answer(self, kind: str) -> None:
        """A request's deadline passed: the central is taken for broken."""
        self._silence = (
            f"the central at {self.peerDescription()} did not answer {kind!r} within "
            f"{self._reply_timeout:g} s"
        )
        self.transport.abortConnection()

    def protocolViolation(self, error: ProtocolError) -> None:
        if self._violation is None:
            self._violation = error
        super().protocolViolation(error)

    def ticket(self, sha256: str) -> wire.Ticket | None:
        """The latest download ticket for content C{sha256}, if any."""
        return self._tickets.get(sha256)

    async def catalog_pages(
        self, after: str | None = None
    ) -> AsyncGenerator[Sequence[wire.CatalogEntry], None]:
        """The catalog one page at a time, in name order, from past C{after}.

        Only the current page is held, so a listing of any size costs one
        page of memory. Each page's names must be in order and past the
        previous page's, and a page promising C{more} must move the cursor;
        past L{MAX_LISTING_PAGES} pages the listing stops, so a hostile
        central can neither loop the client nor feed it forever.
        """
        for _ in range(MAX_LISTING_PAGES):
            page = await self._ask(
                wire.ListFiles(self.allocateId(), after), wire.Catalog
            )
            names = [entry.info.name for entry in page.files]
            if any(a >= b for a, b in pairwise(names)) or (
                after is not None and names and names[0] <= after
            ):
                raise BadCentralReplyError(
                    "the central's catalog pages are not in name order; stopped listing"
                )
            if page.files:
                yield page.files
            if not page.more:
                return
            cursor = page.last_name if isinstance(page, CatalogPage) else None
            if cursor is None or (after is not None and cursor <= after):
                raise BadCentralReplyError(
                    "the central's catalog does not advance; stopped listing"
                )
            after = cursor
        raise BadCentralReplyError(
            f"the central's catalog has more than {MAX_LISTING_PAGES} pages; "
            "stopped listing"
        )

    async def list(self) -> list[dict[str, Any]]:
        """The whole catalog as file infos with their source counts, in memory.

        For small catalogs and tests; the listing commands stream
        L{catalog_pages} instead.
        """
        return [
            entry.to_wire() async for page in self.catalog_pages() for entry in page
        ]

    async def locate(self, name: str) -> tuple[FileInfo, list[SourceAddress]]:
        reply = await self._ask(wire.Locate(self.allocateId(), name), wire.Located)
        if reply.file.name != name:
            raise BadCentralReplyError(
                f"the central answered for {reply.file.name!r} when asked for {name!r}"
            )
        if reply.ticket is not None:
            self._tickets[reply.file.sha256] = reply.ticket
        return reply.file, list(reply.sources)

    async def admit(
        self, name: str, onPosition: Callable[[int], None] | None = None
    ) -> float:
        """Wait for a download slot; return the seconds spent waiting.

        While queued, C{onPosition} hears our place in line each time it
        changes. The slot is ours until L{report} or until we disconnect.
        """
        request = wire.Admit(self.allocateId(), name)
        if onPosition is not None:
            self._positionListeners[request.id] = onPosition
        self._admits.add(request.id)
        try:
            reply = await self._ask(request, wire.Admitted)
        finally:
            self._positionListeners.pop(request.id, None)
            self._admits.discard(request.id)
            if not self._admits:
                self._stop_keepalive()
        return reply.queued_seconds

    def msg_queued(self, message: wire.Queued) -> None:
        if message.id not in self._admits:
            # Only an admit may be answered by a place in the queue.
            return
        # In the queue: the slot comes when it comes, but the central must
        # keep answering pings meanwhile.
        self._answered(message.id)
        if self._reply_timeout is not None and self._keepalive is None:
            self._keepalive = LoopingCall(self._ping)
            self._keepalive.clock = self._clock
            self._keepalive.start(self._reply_timeout, now=False)
        listener = self._positionListeners.get(message.id)
        if listener is not None:
            listener(message.position)

    def _ping(self) -> None:
        """Ask for a pong within the reply timeout, or hang up (L{_no_answer})."""
        asked = Deferred.fromCoroutine(
            self._ask(wire.Ping(self.allocateId()), wire.Pong)
        )
        # A silent central fails the queued admit itself; nothing more to say.
        asked.addErrback(lambda _: None)

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            if self._keepalive.running:
                self._keepalive.stop()
            self._keepalive = None

    def msg_error(self, message: wire.Error) -> None:
        """An error that answers no waiting request, such as a slot taken back."""
        if message.code == "slot_expired":
            notice.warn(
                "the central took back our download slot: {why}", why=message.message
            )
        elif message.code == "unknown_type" and "progress" in message.message:
            self.refuses_progress = True
        else:
            self.log.info(
                "the central said: {code}: {why}",
                code=message.code,
                why=message.message,
            )

    def report(self, name: str, ok: bool, size: int, fetched: int, reason: str) -> None:
        """Tell the central how a download ended; this frees our slot.

        If the central is gone by then there is nothing to free; Twisted
        drops writes to a closed transport.
        """
        self.sendMessage(wire.Report(name, ok, size, fetched, reason))

    def reportBadReplica(self, name: str, sha256: str, source: str) -> None:
        """Tell the central C{source} sent bytes of C{name} that did not verify."""
        self.sendMessage(wire.BadReplica(name, sha256, source))

    def close(self) -> Deferred[None]:
        """Hang up once everything sent is written; fire when the line is closed.

        Waiting matters: a process that stops its reactor right after a
        C{report} would otherwise lose it.
        """
        self.transport.loseConnection()
        return self._closed

    def connectionLost(self, reason: Failure) -> None:
        self._stop_keepalive()
        for request_id in list(self._deadlines):
            self._answered(request_id)
        super().connectionLost(reason)
        if not self._closed.called:
            self._closed.callback(None)


async def connect_central(
    endpoint: IStreamClientEndpoint,
    clientName: str,
    token: str = EPHEMERAL_TOKEN,
    reply_timeout: float | None = None,
) -> CentralConnection:
    """Connect and say hello; fail if the central is unreachable, refuses,
    or lets a request wait past C{reply_timeout} seconds."""
    connection = await connect_protocol(
        endpoint, CentralConnection(clientName, token, reply_timeout)
    )
    await connection.welcomed
    return connection
