"""What every central session shares: the decisions behind the session machine.

L{redesdl.machines.central_session} decides what a message means in its
connection's state; the methods here carry it out on the state all
connections share: the registry of secondaries and their files, the
admission queue, the replication planner, statistics and download tickets.
They are the machine's L{redesdl.machines.central_session.Central} verbs.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from typing import Any

from twisted.logger import Logger

from redesdl.central.admission import AdmissionQueue, SlotRequest
from redesdl.central.intake import ReportIntake
from redesdl.central.planner import ReplicationPlanner
from redesdl.central.registry import Registry, SecondaryRecord, run_at_once
from redesdl.central.removals import Removals
from redesdl.central.sampling import MAX_LOCATED_SOURCES, some_holders
from redesdl.central.stats import CentralStats
from redesdl.central.web.observed import Observations
from redesdl.manifest import FileInfo
from redesdl.printable import printable
from redesdl.protocol.auth import ClusterSecret
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.sources import parse_host_port
from redesdl.protocol.tickets import TICKET_LIFETIME, Tickets
from redesdl.protocol.wire import (
    MAX_FILES_PER_MESSAGE,
    Activity,
    BadReplica,
    Catalog,
    CatalogDone,
    CatalogEntry,
    FilesAdded,
    FilesRemoved,
    ListFiles,
    Locate,
    Located,
    Message,
    Ping,
    Progress,
    Replicated,
    Report,
    SecondaryHello,
    Ticket,
    Verified,
    Verify,
    Withdraw,
)

#: Bytes of entries per ``catalog`` page, so a reply stays a small frame.
LIST_PAGE_BYTES = 128 * 1024
#: Seconds a slot is kept without a ``locate`` of its file (clients send one
#: every 3 s while they download).
SLOT_IDLE_TIMEOUT = 30.0
#: Corrupt-copy reports one client name may make per window, all downloads.
BAD_REPLICA_BURST = 8
BAD_REPLICA_WINDOW = 60.0


class CentralServices:
    """The shared state behind every session, and the verbs sessions use."""

    log = Logger(namespace="redesdl.central.services")

    def __init__(
        self,
        clock: Any,
        stats: CentralStats,
        min_secondaries: int,
        max_active: int,
        heartbeat_timeout: float,
        idle_timeout: float,
        slot_idle_timeout: float,
        secret: ClusterSecret | None,
        cooperate: Callable[[Iterator[None]], Any] = run_at_once,
    ) -> None:
        self.clock = clock
        self.stats = stats
        self.secret = secret
        self.tickets = Tickets(secret) if secret is not None else None
        self.minSecondaries = min_secondaries
        self.heartbeat_timeout = heartbeat_timeout
        self.idle_timeout = idle_timeout
        self.slot_idle_timeout = slot_idle_timeout
        self.registry = Registry(cooperate)
        #: Files an operator removed; the tap gives it its file in the state.
        self.removals = Removals()
        self.intake = ReportIntake(self._fold_report, cooperate)
        self.planner = ReplicationPlanner(
            self.registry,
            clock,
            ticketFor=self.ticketFor,
            removed=self.removals.covers,
        )
        self.admission = AdmissionQueue(max_active, clock)
        self._bad_replica_times: dict[str, deque[float]] = defaultdict(deque)
        #: Recent history the web dashboard shows (bounded lists).
        self.observed = Observations(clock)

    # -- tickets -----------------------------------------------------------

    def ticketFor(
        self, sha256: str, holder: str, lifetime: int = TICKET_LIFETIME
    ) -> Ticket | None:
        """A download ticket for C{holder}, if this cluster has a secret."""
        if self.tickets is None:
            return None
        expires = int(self.clock.seconds()) + lifetime
        return self.tickets.issue(sha256, holder, expires)

    # -- clients -----------------------------------------------------------

    def may_use_client_name(self, name: str, token: str) -> bool:
        return self.stats.mayUseClientName(name, token)

    def catalog_page(self, request: ListFiles) -> Catalog:
        """One page of the catalog: the entries named after C{request.after}.

        It walks the index from the cursor, so a page costs O(log n + page).
        """
        page: list[CatalogEntry] = []
        size, more = 0, False
        for entry in self.registry.names_after(request.after):
            wire = entry.wire()
            size += len(wire.json()) + 1
            if len(page) == MAX_FILES_PER_MESSAGE or size > LIST_PAGE_BYTES:
                more = True
                break
            page.append(wire)
        return Catalog(request.id, tuple(page), more)

    def locate(
        self, request: Locate, ticket_holder: str | None, requester: str
    ) -> Located:
        entry = self.registry.locate(request.name)
        registered = len(self.registry.secondaries)
        if registered < self.minSecondaries:
            raise ProtocolError(
                "not_ready",
                f"the central waits for {self.minSecondaries} secondaries "
                f"before serving downloads; {registered} registered so far",
            )
        ticket = None
        if ticket_holder is not None:
            ticket = self.ticketFor(entry.info.sha256, ticket_holder)
        holders = some_holders(entry.holders, requester, MAX_LOCATED_SOURCES)
        sources = tuple(holder.address for holder in holders)
        return Located(request.id, entry.info, sources, ticket)

    def in_catalog(self, name: str) -> bool:
        return self.registry.entry(name) is not None

    def ask_slot(self, holder: Any, client: str, name: str, session: Any) -> None:
        request = SlotRequest(
            holder, client, name, self.clock.seconds(), onPosition=session.queue_moved
        )
        self.admission.ask(request).addCallback(session.slot_granted)

    def release_slot(self, holder: Any) -> None:
        self.admission.release(holder)

    def download_progress(self, holder: Any, progress: Progress) -> None:
        self.admission.progressed(
            holder, progress.done, progress.rate, progress.sources
        )

    def download_ended(self, client: str, token: str, report: Report) -> None:
        reason = "" if report.ok else printable(report.reason or "unknown")
        self.observed.download_ended(
            client, report.name, report.ok, report.bytes_fetched, reason
        )
        self.log.info(
            "{client} {outcome} {file} ({fetched} bytes fetched){why}",
            client=client,
            outcome="completed" if report.ok else "failed",
            file=report.name,
            fetched=report.bytes_fetched,
            why="" if report.ok else f": {reason}",
            ok=report.ok,
        )
        self.stats.downloadEnded(
            client,
            token,
            report.name,
            report.ok,
            report.size,
            report.bytes_fetched,
            reason,
        )

    def bad_replica(self, client: str, report: BadReplica) -> None:
        """Stop offering a copy a downloader found corrupt; ask for a check.

        It never removes anything on a client's word alone, and one client
        name gets L{BAD_REPLICA_BURST} reports per window, whatever its
        connections.
        """
        record = self.registry.byName(report.source)
        info = record.files.get(report.name) if record is not None else None
        if record is None or info is None or info.sha256 != report.sha256:
            return
        if report.name in record.suspect or not self._may_complain(client):
            return
        self.log.warn(
            "{client} reports {source}'s copy of {name} as corrupt; asking "
            "{source} to check it",
            client=client,
            source=record.name,
            name=report.name,
        )
        self.registry.suspect(record, report.name)
        self.observed.copy_set_aside(
            record.name, report.name, f"{client} reported it corrupt"
        )
        record.connection.sendMessage(Verify(report.name, report.sha256))

    def _may_complain(self, client: str) -> bool:
        now = self.clock.seconds()
        if len(self._bad_replica_times) > 1024:
            # Forget names whose reports are all older than the window.
            for name, old in list(self._bad_replica_times.items()):
                if not old or old[-1] <= now - BAD_REPLICA_WINDOW:
                    del self._bad_replica_times[name]
        times = self._bad_replica_times[client]
        while times and times[0] <= now - BAD_REPLICA_WINDOW:
            times.popleft()
        if len(times) >= BAD_REPLICA_BURST:
            return False
        times.append(now)
        return True

    # -- secondaries -------------------------------------------------------

    def register_secondary(self, hello: SecondaryHello, connection: Any) -> Any:
        if hello.advertise is not None:
            try:
                host, port = parse_host_port(hello.advertise)
            except ValueError as e:
                raise ProtocolError("bad_request", str(e)) from None
        else:
            host, port = connection.peer_host(), hello.port
        record = SecondaryRecord(
            hello.secondary_id, hello.name, host, port, connection, boot=hello.boot
        )
        previous = self.registry.register(record)
        if previous is not None and previous.connection is not connection:
            self.planner.forget(previous)
            previous.connection.session.replaced()
        self.stats.secondaryRegistered(hello.name)
        self.observed.secondary_registered(hello.name)
        return record

    def remove_file(self, name: str) -> list[str] | None:
        """Remove C{name} from the cluster; the secondaries told to move it aside.

        None if no secondary holds or held C{name}. The removal is remembered,
        so a copy reported later is moved aside too and never replicated.
        """
        contents = self.registry.withdraw(name)
        if not contents:
            return None
        self.removals.add(name, contents)
        told = []
        for sha256, holders in contents.items():
            for record in holders:
                record.connection.sendMessage(Withdraw(name, sha256))
                told.append(record.name)
        self.log.info(
            "{name} removed from the cluster; {count} secondaries told to move "
            "it aside",
            name=name,
            count=len(told),
        )
        return sorted(told)

    def _not_removed(
        self, record: SecondaryRecord, infos: tuple[FileInfo, ...]
    ) -> list[FileInfo]:
        """The C{infos} not removed; C{record} is told to move the others aside."""
        kept = []
        for info in infos:
            if self.removals.covers(info.name, info.sha256):
                record.connection.sendMessage(Withdraw(info.name, info.sha256))
            else:
                kept.append(info)
        return kept

    def secondary_gone(self, record: SecondaryRecord) -> None:
        if self.registry.secondaries.get(record.id) is record:
            self.observed.secondary_gone(record)
        self.registry.unregister(record)
        self.planner.forget(record)

    def secondary_said(self, record: SecondaryRecord, message: Message) -> None:
        """Note a heartbeat now; fold any other report in after the earlier ones."""
        if isinstance(message, Ping):
            record.lastHeard = self.clock.seconds()
        else:
            self.intake.submit(record, message)

    def _fold_report(self, record: SecondaryRecord, message: Message) -> None:
        """Fold a registered secondary's report into the shared state."""
        registry = self.registry
        if isinstance(message, FilesAdded):
            registry.addFiles(record, self._not_removed(record, message.files))
        elif isinstance(message, CatalogDone):
            registry.catalogDone(record)
        elif isinstance(message, FilesRemoved):
            registry.removeFiles(record, list(message.names))
        elif isinstance(message, Replicated):
            self.planner.finished(record, message.name, message.ok, message.reason)
        elif isinstance(message, Verified):
            self.log.info(
                "{source} checked {name}: {verdict}",
                source=record.name,
                name=message.name,
                verdict="intact" if message.ok else "corrupt, set aside",
            )
            registry.cleared(record, message.name)
            if not message.ok:
                self.observed.copy_set_aside(
                    record.name, message.name, "its own check found it corrupt"
                )
        elif isinstance(message, Activity):
            served = [
                {"file": s.file, "chunks": s.chunks, "bytes": s.bytes}
                for s in message.served
            ]
            self.stats.activityReported(record.name, served)
            self.observed.served.add(record.name, sum(s.bytes for s in message.served))
