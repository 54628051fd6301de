"""The central's end of every conversation: clients asking, secondaries reporting.

A connection starts with ``hello`` naming its role. Clients may then ``list``,
``locate``, ask to be ``admit``ted for a download and ``report`` its end;
secondaries report ``files_added``, ``files_removed``, ``replicated`` and
``activity``, and receive ``replicate`` requests from the planner. This
module only parses and checks messages; the registry and planner decide.
"""

from __future__ import annotations

from typing import Any

from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from redesdl.central.admission import AdmissionQueue, Ticket
from redesdl.central.planner import ReplicationPlanner
from redesdl.central.registry import Registry, SecondaryRecord
from redesdl.central.stats import CentralStats
from redesdl.manifest import FileInfo
from redesdl.names import validate_name
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.messages import (
    MAX_FILES_PER_MESSAGE,
    PROTOCOL_VERSION,
    MessageProtocol,
    count,
    digest,
    items,
    optional_text,
    text,
)
from redesdl.protocol.sources import parse_host_port
from redesdl.protocol.tracking import TrackingFactory


class CentralProtocol(MessageProtocol, TimeoutMixin):
    """One connection to the central, from a client or a secondary.

    A registered secondary must send something (at least its ``ping``)
    every ``heartbeatTimeout`` seconds, or it is taken for hung and dropped:
    a frozen process keeps its TCP connection open but stops talking.
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

    def _require(self, *roles: str) -> None:
        if self.role is None:
            raise ProtocolError("hello_first", "say hello first")
        if self.role not in roles:
            raise ProtocolError("forbidden", f"a {self.role} may not do this")

    def msg_hello(self, message: dict[str, Any]) -> None:
        if self.role is not None:
            raise ProtocolError("bad_request", "hello was already said")
        if message.get("version") != PROTOCOL_VERSION:
            raise ProtocolError(
                "version", f"the central speaks version {PROTOCOL_VERSION}"
            )
        role = text(message, "role", max_length=16)
        name = text(message, "name", max_length=256)
        if role == "secondary":
            self._registerSecondary(message, name)
        elif role != "client":
            raise ProtocolError("bad_request", f"unknown role {role!r}")
        self.role, self.peerName = role, name
        self.sendMessage(
            {"type": "welcome", "id": message.get("id"), "version": PROTOCOL_VERSION}
        )

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
        self._require("client", "secondary")
        self.sendMessage(
            {
                "type": "catalog",
                "id": count(message, "id"),
                "files": [e.to_wire() for e in self.factory.registry.catalog()],
            }
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
        self.sendMessage(
            {
                "type": "located",
                "id": request_id,
                "file": entry.info.to_wire(),
                "sources": [h.address.to_wire() for h in entry.holders],
            }
        )

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

        ticket = Ticket(
            self, self.peerName, name, factory.clock.seconds(), onPosition=position
        )
        factory.admission.ask(ticket).addCallback(
            lambda waited: self.sendMessage(
                {
                    "type": "admitted",
                    "id": request_id,
                    "queued_seconds": round(waited, 3),
                }
            )
        )

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
        self.factory.stats.downloadEnded(
            self.peerName,
            name,
            ok,
            count(message, "size"),
            count(message, "bytes_fetched"),
            "" if ok else (optional_text(message, "reason") or "unknown"),
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
        assert self.record is not None
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

    def __init__(
        self,
        clock: Any,
        stats: CentralStats,
        minSecondaries: int = 1,
        maxActive: int = 5,
        heartbeatTimeout: float = 15.0,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.heartbeatTimeout = heartbeatTimeout
        self.stats = stats
        self.registry = Registry()
        self.planner = ReplicationPlanner(self.registry, clock)
        self.admission = AdmissionQueue(maxActive, clock)
        self.minSecondaries = minSecondaries
