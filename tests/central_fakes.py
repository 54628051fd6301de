"""A recording connection and a fake central for driving the session machine alone."""

from __future__ import annotations

from typing import Any

from redesdl.machines.central_session import MACHINE, CentralSession, SessionCore
from redesdl.machines.rules import state_of
from redesdl.manifest import FileInfo
from redesdl.protocol import wire
from redesdl.protocol.auth import ClusterSecret
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.sources import SourceAddress

SECRET = ClusterSecret(b"k" * 32)
INFO = FileInfo("a.bin", 10, "a" * 64, "1" * 64)
OTHER = FileInfo("b.bin", 20, "b" * 64, "2" * 64)
TOKEN = "t" * 16


class RecordingConnection:
    """The connection verbs, writing down what the machine asked for."""

    def __init__(self) -> None:
        self.sent: list[wire.Message] = []
        self.refused: list[tuple[str, str, int | None]] = []
        self.hung_up = False
        self.silence: float | None = None
        self.slot_timer: float | None = None
        self.complaints: list[tuple[str, dict[str, Any]]] = []

    def send(self, message: wire.Message) -> None:
        self.sent.append(message)

    def refuse(self, kind: str, error: ProtocolError, request_id: int | None) -> None:
        self.refused.append((kind, error.code, request_id))
        self.sent.append(wire.Error(error.code, error.message, request_id))

    def hang_up(self, error: ProtocolError | None) -> None:
        self.hung_up = True

    def close_silent(self, seconds: float) -> None:
        self.hung_up = True

    def abort(self) -> None:
        self.hung_up = True

    def watch_silence(self, seconds: float | None) -> None:
        self.silence = seconds

    def watch_slot(self, seconds: float | None) -> None:
        self.slot_timer = seconds

    def peer_host(self) -> str:
        return "10.0.0.1"

    def complain(self, log_format: str, **fields: Any) -> None:
        self.complaints.append((log_format, fields))

    def take(self) -> list[wire.Message]:
        sent, self.sent = self.sent, []
        return sent


class FakeCentral:
    """The shared verbs: one file in the catalog, slots granted on demand."""

    idle_timeout = 60.0
    heartbeat_timeout = 15.0
    slot_idle_timeout = 30.0

    def __init__(self, secret: ClusterSecret | None = None) -> None:
        self.secret = secret
        self.registered: list[Any] = []
        self.gone: list[Any] = []
        self.said: list[wire.Message] = []
        self.asked: list[tuple[str, str]] = []
        self.released = 0
        self.waiting: CentralSession | None = None
        self.ended: list[wire.Report] = []
        self.complaints: list[wire.BadReplica] = []
        self.progress: list[wire.Progress] = []
        self.tickets: list[tuple[str, str]] = []

    def may_use_client_name(self, name: str, token: str) -> bool:
        return token == TOKEN

    def register_secondary(self, hello: wire.SecondaryHello, connection: Any) -> Any:
        record = ("record", hello.secondary_id)
        self.registered.append(record)
        return record

    def secondary_gone(self, record: Any) -> None:
        self.gone.append(record)

    def secondary_said(self, record: Any, message: wire.Message) -> None:
        self.said.append(message)

    def catalog_page(self, request: wire.ListFiles) -> wire.Catalog:
        return wire.Catalog(request.id, (wire.CatalogEntry(INFO, 1),), False)

    def locate(
        self, request: wire.Locate, ticket_holder: str | None, requester: str
    ) -> wire.Located:
        info = {"a.bin": INFO, "b.bin": OTHER}.get(request.name)
        if info is None:
            raise ProtocolError("not_found", "no such file")
        ticket = None
        if ticket_holder is not None:
            self.tickets.append((request.name, ticket_holder))
            ticket = wire.Ticket(1, "0" * 64)
        return wire.Located(
            request.id, info, (SourceAddress("s1", "10.0.0.2", 1),), ticket
        )

    def in_catalog(self, name: str) -> bool:
        return name in ("a.bin", "b.bin")

    def ask_slot(self, holder: Any, client: str, name: str, session: Any) -> None:
        self.asked.append((client, name))
        self.waiting = session
        session.queue_moved(1)

    def release_slot(self, holder: Any) -> None:
        self.released += 1

    def download_ended(self, client: str, token: str, report: wire.Report) -> None:
        self.ended.append(report)

    def bad_replica(self, client: str, report: wire.BadReplica) -> None:
        self.complaints.append(report)

    def download_progress(self, holder: Any, progress: wire.Progress) -> None:
        self.progress.append(progress)


class Session:
    """One machine with its fakes, and shortcuts to reach each state."""

    def __init__(self, secret: ClusterSecret | None = None) -> None:
        self.connection = RecordingConnection()
        self.central = FakeCentral(secret)
        self.core = SessionCore(self.connection, self.central)
        self.inputs = MACHINE(self.core)

    @property
    def state(self) -> str:
        return state_of(self.inputs)

    def reach(self, state: str) -> Session:
        """Drive the machine into C{state} by the usual path."""
        i = self.inputs
        if state in ("challenging", "registered_secondary"):
            i.hello(wire.SecondaryHello(1, "s1", "id-s1", 0, 7101, nonce="0" * 32))
            if state == "registered_secondary" and self.core.challenge is not None:
                i.auth(wire.Auth(2, self.proof()))
        elif state.startswith("client_") or state == "closed":
            i.hello(wire.ClientHello(1, "alice", TOKEN))
            if state in ("client_queued", "client_active"):
                i.admit(wire.Admit(2, "a.bin"))
            if state == "client_active":
                i.slot_granted(0.5)
            if state == "closed":
                i.connection_lost()
        assert self.state == state, (self.state, state)
        self.connection.take()
        return self

    def proof(self) -> str:
        assert self.core.challenge is not None and self.central.secret is not None
        hello, ours = self.core.challenge
        assert hello.nonce is not None
        return self.central.secret.mac(
            "secondary", ours, hello.nonce, hello.secondary_id
        )
