"""The central's end of every conversation: clients asking, secondaries reporting.

A connection starts with ``hello`` naming its role. Clients may then ``list``
and ``locate``; secondaries report ``files_added``, ``files_removed`` and
``replicated``, and receive ``replicate`` requests from the planner. This
module only parses and checks messages; the registry and planner decide.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

from redesdl.central.planner import ReplicationPlanner
from redesdl.central.registry import Registry, SecondaryRecord
from redesdl.manifest import FileInfo
from redesdl.names import validate_name
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.messages import (
    MAX_FILES_PER_MESSAGE,
    PROTOCOL_VERSION,
    MessageProtocol,
    count,
    items,
    optional_text,
    text,
)
from redesdl.protocol.sources import parse_host_port
from redesdl.protocol.tracking import TrackingFactory


class CentralProtocol(MessageProtocol):
    """One connection to the central, from a client or a secondary."""

    maxFrameLength = 256 * 1024
    factory: CentralFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        self.role: str | None = None
        self.peerName = ""
        self.record: SecondaryRecord | None = None

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
        record = SecondaryRecord(secondary_id, name, host, port, self)
        previous = self.factory.registry.register(record)
        if previous is not None and previous.connection is not self:
            self.factory.planner.forget(previous)
            previous.connection.record = None
            previous.connection.transport.loseConnection()
        self.record = record

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

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if self.record is not None:
            self.factory.registry.unregister(self.record)
            self.factory.planner.forget(self.record)
            self.record = None


class CentralFactory(TrackingFactory):
    """Shared state behind every central connection."""

    protocol = CentralProtocol

    def __init__(self, clock: Any, minSecondaries: int = 1) -> None:
        super().__init__()
        self.registry = Registry()
        self.planner = ReplicationPlanner(self.registry, clock)
        self.minSecondaries = minSecondaries
