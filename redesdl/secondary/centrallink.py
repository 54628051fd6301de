"""The secondary's long-lived connection to the central: the Twisted shell.

On every (re)connection the secondary says ``hello`` with its id, name and
port, proves it holds the cluster secret if the cluster has one (and checks
that the central does too), then reports its whole catalog in batches;
afterwards it reports index changes as they happen and takes ``replicate``,
``verify`` and ``withdraw`` orders. What may happen when is decided by the machine in
L{redesdl.machines.central_link}: orders count only once registered. This
module decodes, calls the machine's inputs, and carries out its verbs.
ClientService reconnects with backoff, so a central restart needs nothing
from an operator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from redesdl.machines.central_link import MACHINE, LinkCore, deliver
from redesdl.manifest import Manifest
from redesdl.protocol import wire
from redesdl.protocol.auth import new_nonce
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import MAX_FILES_PER_MESSAGE, compact_json
from redesdl.secondary.index import IndexChanges
from redesdl.shells.framing import FrameProtocol
from redesdl.transfer.reasons import describe_error

if TYPE_CHECKING:
    from redesdl.secondary.service import SecondaryService

T = TypeVar("T")


#: Bytes of entries one report (``files_added``, ``files_removed``,
#: ``activity``) carries at most, as JSON: well under the central's 256 KiB
#: frame, whatever the entries (256 names of 1024 characters would not be).
MAX_REPORT_BYTES = 192 * 1024


def batches(
    values: Sequence[T],
    weigh: Callable[[T], Any],
    size: int = MAX_FILES_PER_MESSAGE,
    budget: int = MAX_REPORT_BYTES,
) -> Iterable[list[T]]:
    """C{values} in order, in lists of at most C{size} whose entries, as the
    wire writes C{weigh(value)}, take at most C{budget} bytes together (an
    entry alone over the budget still goes, alone)."""
    batch: list[T] = []
    weight = 0
    for value in values:
        cost = len(compact_json(weigh(value)))
        if batch and (len(batch) == size or weight + cost > budget):
            yield batch
            batch, weight = [], 0
        batch.append(value)
        weight += cost
    if batch:
        yield batch


class Membership(Protocol):
    """What a link tells about itself: up, down, or refused by its central."""

    def linkUp(self, link: CentralLinkProtocol) -> None: ...
    def linkDown(self, link: CentralLinkProtocol) -> None: ...
    def centralRefused(self) -> None: ...


class CentralLinkProtocol(FrameProtocol, TimeoutMixin):
    """Register with the central, keep it informed, take its orders once registered.

    Once registered it sends a ``ping`` every C{heartbeatInterval} seconds;
    if the central sends nothing for C{heartbeatTimeout} seconds the link is
    taken for dead and dropped, and ClientService connects again.
    """

    maxFrameLength = 256 * 1024
    vocabulary = wire.SECONDARY_FROM_CENTRAL

    def __init__(self, secondary: SecondaryService, membership: Membership) -> None:
        self._secondary = secondary
        #: Told when the link is up, down or refused: this central's membership.
        self._membership = membership
        self.callLater = secondary.reactor.callLater
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = secondary.reactor
        hello = wire.SecondaryHello(
            id=1,
            name=secondary.name,
            secondary_id=secondary.secondaryId,
            boot=secondary.boot,
            port=secondary.listeningPort(),
            advertise=secondary.advertise,
            nonce=new_nonce() if secondary.secret is not None else None,
        )
        self._core = LinkCore(
            world=self,
            hello=hello,
            secret=secondary.secret,
            heartbeat_timeout=secondary.heartbeatTimeout,
        )
        self._machine = MACHINE(self._core)

    @property
    def registered(self) -> bool:
        """True from the central's (proven) welcome until the link ends."""
        return self._core.registered

    # -- Twisted calls these; each becomes an input --------------------------

    def connectionMade(self) -> None:
        self.setTimeout(self._secondary.heartbeatTimeout)
        self._machine.connection_made()

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)

    def messageReceived(self, message: wire.Message) -> None:
        deliver(self._machine, message)

    def messageRefused(
        self, kind: str, error: ProtocolError, request_id: int | None
    ) -> None:
        self._machine.malformed(kind, error, request_id)

    def timeoutConnection(self) -> None:
        self._machine.silence()

    def _beat(self) -> None:
        self._machine.heartbeat_due()

    def connectionLost(self, reason: Failure) -> None:
        self.setTimeout(None)
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self.registered:
            self.log.info("lost the central: {reason}", reason=reason.getErrorMessage())
        self._machine.connection_lost()
        self._membership.linkDown(self)

    # -- The machine's verbs (redesdl.machines.central_link.LinkWorld) -------

    def send(self, message: wire.Message) -> None:
        self.sendMessage(message)

    def refuse(self, why: str) -> None:
        self.log.error("{why}", why=why)
        self._hang_up()
        self._membership.centralRefused()

    def reconnect(self, why: str) -> None:
        self.log.warn("{why}", why=why)
        self._hang_up()

    def _hang_up(self) -> None:
        # Nothing more of what arrived is read, and nothing needs flushing.
        self._broken = True
        if self._heartbeat.running:
            self._heartbeat.stop()
        self.transport.abortConnection()

    def joined(self) -> None:
        self.log.info(
            "registered with the central as {name}", name=self._secondary.name
        )
        self.sendAdded(self._secondary.index.manifests())
        self.sendMessage(wire.CatalogDone())
        self._heartbeat.start(self._secondary.heartbeatInterval, now=False)
        self._membership.linkUp(self)

    def replicate(self, order: wire.Replicate) -> None:
        self._secondary.replicator.replicate(
            order.file, list(order.sources), order.ticket
        )

    def verify(self, order: wire.Verify) -> None:
        self._secondary.checkCopy(order.name)

    def withdraw(self, order: wire.Withdraw) -> None:
        self._secondary.withdrawCopy(order.name, order.sha256)

    def warn(self, why: str) -> None:
        self.log.warn("{why}", why=why)

    def refuse_message(
        self, kind: str, error: ProtocolError, request_id: int | None
    ) -> None:
        self.complain_of_refusal(kind, error)
        self.sendMessage(wire.Error.of(error, request_id))

    # -- What the secondary reports -----------------------------------------

    def sendChanges(self, changes: IndexChanges) -> None:
        for names in batches(changes.removed, weigh=lambda name: name):
            self.sendMessage(wire.FilesRemoved(tuple(names)))
        self.sendAdded(changes.added)

    def sendAdded(self, manifests: list[Manifest]) -> None:
        for group in batches(manifests, weigh=lambda m: m.info.to_wire()):
            self.sendMessage(wire.FilesAdded(tuple(m.info for m in group)))

    def sendReplicated(self, name: str, ok: bool, reason: str = "") -> None:
        self.sendMessage(wire.Replicated(name, ok, reason))

    def sendVerified(self, name: str, ok: bool) -> None:
        self.sendMessage(wire.Verified(name, ok))

    def sendActivity(self, served: list[wire.Served]) -> None:
        for batch in batches(served, weigh=wire.Served.to_wire):
            self.sendMessage(wire.Activity(tuple(batch)))


class CentralLinkFactory(Factory):
    """Build the link protocol for ClientService's every (re)connection."""

    noisy = False

    def __init__(self, secondary: SecondaryService, membership: Membership) -> None:
        self._secondary = secondary
        self._membership = membership

    def buildProtocol(self, addr: Any) -> CentralLinkProtocol:
        return CentralLinkProtocol(self._secondary, self._membership)


@implementer(IStreamClientEndpoint)
class ReportingEndpoint:
    """Wrap the central's endpoint so every failed attempt says why in the log.

    ClientService retries on its own but logs only that it will; an operator
    needs the reason (refused, unknown host, timed out).
    """

    log = Logger()

    def __init__(self, endpoint: IStreamClientEndpoint, description: str) -> None:
        self._endpoint = endpoint
        self._description = description

    def __repr__(self) -> str:
        return f"<the central at {self._description}>"

    def connect(self, factory: Any) -> Deferred[Any]:
        def failed(reason: Failure) -> Failure:
            self.log.warn(
                "cannot reach the central at {central}: {reason}",
                central=self._description,
                reason=describe_error(reason.value),
            )
            return reason

        return self._endpoint.connect(factory).addErrback(failed)
