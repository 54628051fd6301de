"""The central's end of every conversation: clients asking, secondaries reporting.

A connection starts with ``hello`` naming its role. Clients may then ``list``,
``locate``, ask to be ``admit``ted for a download and ``report`` its end;
secondaries report ``files_added``, ``files_removed``, ``replicated`` and
``activity``, and receive ``replicate`` requests from the planner. This
module only parses and checks messages; the registry and planner decide.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from redesdl.central.admission import AdmissionQueue, SlotRequest
from redesdl.central.planner import ReplicationPlanner
from redesdl.central.registry import Registry, SecondaryRecord
from redesdl.central.stats import CentralStats
from redesdl.manifest import FileInfo
from redesdl.names import validate_name
from redesdl.protocol.auth import ClusterSecret, is_nonce, new_nonce
from redesdl.protocol.complaints import COMPLAINTS, peer_host
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.messages import (
    MAX_FILES_PER_MESSAGE,
    PROTOCOL_VERSION,
    MessageProtocol,
    count,
    digest,
    items,
    optional_text,
    request_id_of,
    text,
)
from redesdl.protocol.sources import parse_host_port
from redesdl.protocol.tickets import TICKET_LIFETIME, Tickets
from redesdl.protocol.tracking import (
    DEFAULT_LIMITS,
    ConnectionLimits,
    TrackingFactory,
)

#: Shortest client token accepted; clients make theirs of 64 hex digits.
MIN_TOKEN_LENGTH = 16
#: Bytes of entries per ``catalog`` page, so a reply stays a small frame.
LIST_PAGE_BYTES = 128 * 1024


class CentralProtocol(MessageProtocol, TimeoutMixin):
    """One connection to the central, from a client or a secondary.

    A registered secondary must send something (at least its ``ping``)
    every ``heartbeatTimeout`` seconds, or it is taken for hung and dropped:
    a frozen process keeps its TCP connection open but stops talking. Any
    other connection silent for ``idleTimeout`` seconds is closed, except a
    client waiting in the admission queue (a downloading client asks for
    sources every few seconds, so it is never silent that long).
    """

    maxFrameLength = 256 * 1024
    factory: CentralFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        self.callLater = self.factory.clock.callLater
        self.role: str | None = None
        self.peerName = ""
        self.record: SecondaryRecord | None = None
        #: The file this client asked a download slot for, until it reports.
        self.admission: str | None = None
        self.clientToken = ""
        #: (hello, name, their nonce, our nonce) while a secondary authenticates.
        self._challenge: tuple[dict[str, Any], str, str, str] | None = None
        self.setTimeout(self.factory.idleTimeout)

    def _require(self, *roles: str) -> None:
        if self.role is None:
            raise ProtocolError("hello_first", "say hello first")
        if self.role not in roles:
            raise ProtocolError("forbidden", f"a {self.role} may not do this")

    def msg_hello(self, message: dict[str, Any]) -> None:
        if self.role is not None or self._challenge is not None:
            raise ProtocolError("bad_request", "hello was already said")
        if message.get("version") != PROTOCOL_VERSION:
            raise ProtocolError(
                "version", f"the central speaks version {PROTOCOL_VERSION}"
            )
        role = text(message, "role", max_length=16)
        name = text(message, "name", max_length=256)
        if role == "secondary":
            if self.factory.secret is not None:
                self._challengeSecondary(message, name)
                return
            self._registerSecondary(message, name)
        elif role == "client":
            token = text(message, "token", max_length=128)
            if len(token) < MIN_TOKEN_LENGTH:
                raise ProtocolError(
                    "bad_request",
                    f"a client token has at least {MIN_TOKEN_LENGTH} characters",
                )
            self._checkClientToken(name, token)
        else:
            raise ProtocolError("bad_request", f"unknown role {role!r}")
        self.role, self.peerName = role, name
        self.sendMessage(
            {"type": "welcome", "id": message.get("id"), "version": PROTOCOL_VERSION}
        )

    def _checkClientToken(self, name: str, token: str) -> None:
        if not self.factory.stats.mayUseClientName(name, token):
            raise ProtocolError(
                "client_name_taken",
                f"the client name {name!r} belongs to another client; "
                "choose another with --name",
            )
        self.clientToken = token

    def _challengeSecondary(self, message: dict[str, Any], name: str) -> None:
        """Ask a would-be secondary to prove it holds the cluster secret."""
        theirs = message.get("nonce")
        if not is_nonce(theirs):
            self._refuseSecondary(
                message, name, "it has no cluster secret (--secret-file)"
            )
            return
        ours = new_nonce()
        self._challenge = (message, name, theirs, ours)
        self.sendMessage({"type": "challenge", "id": message.get("id"), "nonce": ours})

    def msg_auth(self, message: dict[str, Any]) -> None:
        """A secondary's answer to our challenge: register it, or hang up."""
        if self._challenge is None or self.role is not None:
            raise ProtocolError("bad_request", "no challenge is waiting for an answer")
        hello, name, theirs, ours = self._challenge
        secret = self.factory.secret
        assert secret is not None
        secondary_id = text(hello, "secondary_id", max_length=64)
        if not secret.verify(
            message.get("proof"), "secondary", ours, theirs, secondary_id
        ):
            self._refuseSecondary(message, name, "wrong cluster secret")
            return
        self._registerSecondary(hello, name)
        self.role, self.peerName = "secondary", name
        self.sendMessage(
            {
                "type": "welcome",
                "id": message.get("id"),
                "version": PROTOCOL_VERSION,
                "proof": secret.mac("central", theirs, ours),
            }
        )

    def _refuseSecondary(self, request: dict[str, Any], name: str, why: str) -> None:
        """Say why C{name} may not join, log it, and hang up."""
        COMPLAINTS.complain(
            peer_host(self.transport),
            "refused secondary {name} from {peer}: {why}",
            name=name[:64],
            why=why,
        )
        self.sendMessage(
            ProtocolError("unauthenticated", why).to_message(request_id_of(request))
        )
        self.transport.loseConnection()

    def _registerSecondary(self, message: dict[str, Any], name: str) -> None:
        secondary_id = text(message, "secondary_id", max_length=64)
        advertise = optional_text(message, "advertise")
        if advertise is not None:
            try:
                host, port = parse_host_port(advertise)
            except ValueError as e:
                raise ProtocolError("bad_request", str(e)) from None
        else:
            host, port = (
                self.transport.getPeer().host,
                count(message, "port", maximum=65535),
            )
        boot = message.get("boot")
        record = SecondaryRecord(
            secondary_id, name, host, port, self, boot=boot if type(boot) is int else 0
        )
        previous = self.factory.registry.register(record)
        if previous is not None and previous.connection is not self:
            self.factory.planner.forget(previous)
            previous.connection.record = None
            previous.connection.transport.loseConnection()
        self.record = record
        self.factory.stats.secondaryRegistered(name)
        self.setTimeout(self.factory.heartbeatTimeout)

    def msg_list(self, message: dict[str, Any]) -> None:
        """One page of the catalog: the entries named after C{after}, in order."""
        self._require("client", "secondary")
        after = message.get("after")
        if after is not None:
            after = text(message, "after")
        request_id = count(message, "id")
        page: list[dict[str, Any]] = []
        size, more = 0, False
        for entry in self.factory.registry.catalog():
            if after is not None and entry.info.name <= after:
                continue
            wire = entry.to_wire()
            size += len(json.dumps(wire))
            if len(page) == MAX_FILES_PER_MESSAGE or size > LIST_PAGE_BYTES:
                more = True
                break
            page.append(wire)
        self.sendMessage(
            {"type": "catalog", "id": request_id, "files": page, "more": more}
        )

    def msg_locate(self, message: dict[str, Any]) -> None:
        self._require("client", "secondary")
        request_id = count(message, "id")
        name = validate_name(text(message, "name"))
        entry = self.factory.registry.locate(name)
        registered = len(self.factory.registry.secondaries)
        if registered < self.factory.minSecondaries:
            raise ProtocolError(
                "not_ready",
                f"the central waits for {self.factory.minSecondaries} secondaries "
                f"before serving downloads; {registered} registered so far",
            )
        located: dict[str, Any] = {
            "type": "located",
            "id": request_id,
            "file": entry.info.to_wire(),
            "sources": [h.address.to_wire() for h in entry.holders],
        }
        ticket = self.factory.ticketFor(entry.info.sha256, self.peerName)
        if ticket is not None:
            located["ticket"] = ticket
        self.sendMessage(located)

    def msg_files_added(self, message: dict[str, Any]) -> None:
        self._require("secondary")
        assert self.record is not None
        infos = [
            FileInfo.from_wire(value)
            for value in items(message, "files", max_items=MAX_FILES_PER_MESSAGE)
        ]
        self.factory.registry.addFiles(self.record, infos)

    def msg_catalog_done(self, message: dict[str, Any]) -> None:
        """The secondary has reported its whole catalog; plan copies for it."""
        self._require("secondary")
        assert self.record is not None
        self.factory.registry.catalogDone(self.record)

    def msg_files_removed(self, message: dict[str, Any]) -> None:
        self._require("secondary")
        assert self.record is not None
        names = items(message, "names", max_items=MAX_FILES_PER_MESSAGE)
        self.factory.registry.removeFiles(
            self.record, [validate_name(text({"n": n}, "n")) for n in names]
        )

    def msg_replicated(self, message: dict[str, Any]) -> None:
        self._require("secondary")
        assert self.record is not None
        self.factory.planner.finished(
            self.record,
            validate_name(text(message, "name")),
            message.get("ok") is True,
            optional_text(message, "reason") or "",
        )

    def msg_admit(self, message: dict[str, Any]) -> None:
        """A client asks for a download slot; it holds it until report or hang-up."""
        self._require("client")
        request_id = count(message, "id")
        name = validate_name(text(message, "name"))
        if self.admission is not None:
            raise ProtocolError(
                "bad_request",
                "one download per connection: report the end of the current one first",
            )
        self.admission = name
        factory = self.factory

        def position(place: int) -> None:
            self.sendMessage({"type": "queued", "id": request_id, "position": place})

        request = SlotRequest(
            self, self.peerName, name, factory.clock.seconds(), onPosition=position
        )
        self.setTimeout(None)

        def admitted(waited: float) -> None:
            self.setTimeout(factory.idleTimeout)
            self.sendMessage(
                {
                    "type": "admitted",
                    "id": request_id,
                    "queued_seconds": round(waited, 3),
                }
            )

        factory.admission.ask(request).addCallback(admitted)

    def msg_report(self, message: dict[str, Any]) -> None:
        """A client says how its download ended; its slot frees."""
        self._require("client")
        ok = message.get("ok") is True
        name = validate_name(text(message, "name"))
        if name != self.admission:
            raise ProtocolError(
                "bad_request",
                f"no download of {name!r} was admitted on this connection",
            )
        self.admission = None
        reason = "" if ok else (optional_text(message, "reason") or "unknown")
        self.log.info(
            "{client} {outcome} {file} ({fetched} bytes fetched){why}",
            client=self.peerName,
            outcome="completed" if ok else "failed",
            file=name,
            fetched=count(message, "bytes_fetched"),
            why="" if ok else f": {reason}",
            ok=ok,
        )
        self.factory.stats.downloadEnded(
            self.peerName,
            self.clientToken,
            name,
            ok,
            count(message, "size"),
            count(message, "bytes_fetched"),
            reason,
        )
        self.factory.admission.release(self)

    def msg_bad_replica(self, message: dict[str, Any]) -> None:
        """A client got bytes from C{source} that did not match their hash.

        The central stops offering that copy and asks its secondary to check
        it; it never removes anything on a client's word alone.
        """
        self._require("client")
        name = validate_name(text(message, "name"))
        sha256 = digest(message, "sha256")
        record = self.factory.registry.byName(text(message, "source", max_length=256))
        info = record.files.get(name) if record is not None else None
        if record is None or info is None or info.sha256 != sha256:
            return
        if name in record.suspect:
            return
        self.log.warn(
            "{client} reports {source}'s copy of {name} as corrupt; asking "
            "{source} to check it",
            client=self.peerName,
            source=record.name,
            name=name,
        )
        self.factory.registry.suspect(record, name)
        record.connection.sendMessage(
            {"type": "verify", "name": name, "sha256": sha256}
        )

    def msg_verified(self, message: dict[str, Any]) -> None:
        """A secondary checked a copy: still good, or set aside (files_removed)."""
        self._require("secondary")
        assert self.record is not None
        name = validate_name(text(message, "name"))
        ok = message.get("ok") is True
        self.log.info(
            "{source} checked {name}: {verdict}",
            source=self.record.name,
            name=name,
            verdict="intact" if ok else "corrupt, set aside",
        )
        self.factory.registry.cleared(self.record, name)

    def msg_activity(self, message: dict[str, Any]) -> None:
        """A secondary reports the chunks it served since its last report."""
        self._require("secondary")
        assert self.record is not None
        served = []
        for item in items(message, "served", max_items=MAX_FILES_PER_MESSAGE):
            if not isinstance(item, dict):
                raise ProtocolError("bad_request", "activity items are objects")
            served.append(
                {
                    "file": validate_name(text(item, "file")),
                    "client": text(item, "client", max_length=256),
                    "chunks": count(item, "chunks"),
                    "bytes": count(item, "bytes"),
                }
            )
        self.factory.stats.activityReported(self.record.name, served)

    def msg_ping(self, message: dict[str, Any]) -> None:
        """A heartbeat; a secondary's also proves it is alive."""
        if self.role == "secondary" and self.record is None:
            raise ProtocolError("not_registered", "register again, with your catalog")
        if self.record is not None:
            self.record.lastHeard = self.factory.clock.seconds()
        self.sendMessage({"type": "pong", "id": count(message, "id")})

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        super().dataReceived(data)

    def timeoutConnection(self) -> None:
        if self.record is None:
            self.closeSilent(self.factory.idleTimeout)
            return
        self.log.warn(
            "secondary {name} said nothing for {seconds} s; taking it for hung",
            name=self.record.name,
            seconds=self.factory.heartbeatTimeout,
        )
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        self.setTimeout(None)
        super().connectionLost(reason)
        self.factory.admission.release(self)
        if self.record is not None:
            self.factory.registry.unregister(self.record)
            self.factory.planner.forget(self.record)
            self.record = None


class CentralFactory(TrackingFactory):
    """Shared state behind every central connection."""

    protocol = CentralProtocol
    log = Logger()

    def ticketFor(
        self, sha256: str, holder: str, lifetime: int = TICKET_LIFETIME
    ) -> dict[str, Any] | None:
        """A download ticket for C{holder}, if this cluster has a secret."""
        if self.tickets is None:
            return None
        expires = int(self.clock.seconds()) + lifetime
        return self.tickets.issue(sha256, holder, expires)

    def startFactory(self) -> None:
        if self.secret is None:
            self.log.warn(
                "RUNNING OPEN: no --secret-file, so anyone who can reach this "
                "central can register a secondary and be offered to clients"
            )

    def __init__(
        self,
        clock: Any,
        stats: CentralStats,
        minSecondaries: int = 1,
        maxActive: int = 5,
        heartbeatTimeout: float = 15.0,
        idleTimeout: float = 60.0,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        secret: ClusterSecret | None = None,
    ) -> None:
        super().__init__(limits)
        self.secret = secret
        self.tickets = Tickets(secret) if secret is not None else None
        self.clock = clock
        self.heartbeatTimeout = heartbeatTimeout
        self.idleTimeout = idleTimeout
        self.stats = stats
        self.registry = Registry()
        self.planner = ReplicationPlanner(
            self.registry, clock, ticketFor=self.ticketFor
        )
        self.admission = AdmissionQueue(maxActive, clock)
        self.minSecondaries = minSecondaries
