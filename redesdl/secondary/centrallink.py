"""The secondary's long-lived connection to the central.

On every (re)connection the secondary says ``hello`` with its id, name and
port, proves it holds the cluster secret if the cluster has one (and checks
that the central does too), then reports its whole catalog in batches;
afterwards it reports index changes as they happen and receives ``replicate``
requests. ClientService reconnects with backoff, so a central restart needs
nothing from an operator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from redesdl.client.reasons import describe_error
from redesdl.manifest import FileInfo, Manifest
from redesdl.names import validate_name
from redesdl.protocol.auth import is_nonce, new_nonce
from redesdl.protocol.errors import RemoteError
from redesdl.protocol.messages import (
    MAX_FILES_PER_MESSAGE,
    PROTOCOL_VERSION,
    MessageProtocol,
    items,
    mapping,
    text,
)
from redesdl.protocol.sources import SourceAddress
from redesdl.secondary.index import IndexChanges

if TYPE_CHECKING:
    from redesdl.secondary.service import SecondaryService


def batches(
    values: list[Any], size: int = MAX_FILES_PER_MESSAGE
) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class CentralLinkProtocol(MessageProtocol, TimeoutMixin):
    """Register with the central, keep it informed, take replication orders.

    Once registered it sends a ``ping`` every C{heartbeatInterval} seconds;
    if the central sends nothing back for C{heartbeatTimeout} seconds the link
    is taken for dead and dropped, and ClientService connects again.
    """

    maxFrameLength = 256 * 1024

    def __init__(self, secondary: SecondaryService) -> None:
        self._secondary = secondary
        self.registered = False
        self.callLater = secondary.reactor.callLater
        self._heartbeat = LoopingCall(self._ping)
        self._heartbeat.clock = secondary.reactor

    def connectionMade(self) -> None:
        super().connectionMade()
        self.setTimeout(self._secondary.heartbeatTimeout)
        hello = {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "role": "secondary",
            "name": self._secondary.name,
            "secondary_id": self._secondary.secondaryId,
            "boot": self._secondary.boot,
            "port": self._secondary.listeningPort(),
        }
        if self._secondary.advertise:
            hello["advertise"] = self._secondary.advertise
        if self._secondary.secret is not None:
            hello["nonce"] = self._nonce = new_nonce()
        self.request(hello).addCallbacks(self._answered, self._refused)

    def _answered(self, reply: dict[str, Any]) -> None:
        """Answer the central's challenge, or refuse a central that has none."""
        secret = self._secondary.secret
        if reply["type"] == "challenge":
            if secret is None:
                self._leave(
                    "the central requires the cluster secret; start this "
                    "secondary with --secret-file"
                )
                return
            theirs = reply.get("nonce")
            if not is_nonce(theirs):
                self._leave("the central's challenge is malformed")
                return
            proof = secret.mac(
                "secondary", theirs, self._nonce, self._secondary.secondaryId
            )
            self.request({"type": "auth", "proof": proof}).addCallbacks(
                lambda welcome: self._checkCentral(welcome, theirs), self._refused
            )
        elif secret is not None:
            self._leave(
                "the central runs without a cluster secret; refusing to join an "
                "open cluster (drop --secret-file to join it anyway)"
            )
        else:
            self._welcomed()

    def _checkCentral(self, welcome: dict[str, Any], theirs: str) -> None:
        secret = self._secondary.secret
        assert secret is not None
        if not secret.verify(welcome.get("proof"), "central", self._nonce, theirs):
            self._leave("the central could not prove it holds the cluster secret")
            return
        self._welcomed()

    def _leave(self, why: str) -> None:
        self.log.error("not registering with the central: {why}", why=why)
        self.transport.loseConnection()
        self._secondary.centralRefused()

    def _welcomed(self) -> None:
        self.registered = True
        self.log.info(
            "registered with the central as {name}", name=self._secondary.name
        )
        self.sendAdded(self._secondary.index.manifests())
        self.sendMessage({"type": "catalog_done"})
        self._heartbeat.start(self._secondary.heartbeatInterval, now=False)
        self._secondary.linkUp(self)

    def _ping(self) -> None:
        # The pong matters only as traffic that resets the timeout.
        self.request({"type": "ping"}).addErrback(self._pingFailed)

    def _pingFailed(self, reason: Failure) -> None:
        if reason.check(RemoteError) and reason.value.code == "not_registered":
            self.log.warn("the central does not know this secondary; registering again")
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)

    def timeoutConnection(self) -> None:
        self.log.warn(
            "the central said nothing for {seconds} s; reconnecting",
            seconds=self._secondary.heartbeatTimeout,
        )
        self.transport.abortConnection()

    def _refused(self, reason: Failure) -> None:
        if reason.check(RemoteError):
            self.log.error(
                "the central refused this secondary: {error}",
                error=reason.value.message,
            )
            self.transport.loseConnection()
            self._secondary.centralRefused()

    def sendChanges(self, changes: IndexChanges) -> None:
        if changes.removed:
            for names in batches(changes.removed):
                self.sendMessage({"type": "files_removed", "names": names})
        self.sendAdded(changes.added)

    def sendAdded(self, manifests: list[Manifest]) -> None:
        for group in batches(manifests):
            self.sendMessage(
                {"type": "files_added", "files": [m.info.to_wire() for m in group]}
            )

    def sendReplicated(self, name: str, ok: bool, reason: str = "") -> None:
        self.sendMessage(
            {"type": "replicated", "name": name, "ok": ok, "reason": reason}
        )

    def msg_replicate(self, message: dict[str, Any]) -> None:
        info = FileInfo.from_wire(mapping(message, "file"))
        sources = [
            SourceAddress.from_wire(value)
            for value in items(message, "sources", max_items=1024)
        ]
        ticket = message.get("ticket")
        self._secondary.replicator.replicate(
            info, sources, ticket if isinstance(ticket, dict) else None
        )

    def msg_verify(self, message: dict[str, Any]) -> None:
        """The central asks us to check our copy of a file a client doubted."""
        self._secondary.checkCopy(validate_name(text(message, "name")))

    def msg_error(self, message: dict[str, Any]) -> None:
        self.log.warn(
            "the central reported an error: {code}: {text}",
            code=message.get("code"),
            text=message.get("message"),
        )

    def connectionLost(self, reason: Failure) -> None:
        self.setTimeout(None)
        if self._heartbeat.running:
            self._heartbeat.stop()
        super().connectionLost(reason)
        if self.registered:
            self.log.info("lost the central: {reason}", reason=reason.getErrorMessage())
        self.registered = False
        self._secondary.linkDown(self)


class CentralLinkFactory(Factory):
    """Build the link protocol for ClientService's every (re)connection."""

    noisy = False

    def __init__(self, secondary: SecondaryService) -> None:
        self._secondary = secondary

    def buildProtocol(self, addr: Any) -> CentralLinkProtocol:
        return CentralLinkProtocol(self._secondary)


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
