"""The verbs the central's session machine acts through, and the peer-name rule.

L{Connection} is the connection itself (the Twisted protocol implements it);
L{Central} is the state every connection shares (the registry, admission
queue, planner, statistics and tickets; L{redesdl.central.services}
implements it). Tests implement both with recording fakes.
"""

from __future__ import annotations

from typing import Any, Protocol

from redesdl.protocol.auth import ClusterSecret
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import (
    BadReplica,
    Catalog,
    ListFiles,
    Locate,
    Located,
    Message,
    Progress,
    Report,
    SecondaryHello,
)


class Connection(Protocol):
    """The verbs of the connection itself (the Twisted protocol implements them)."""

    def send(self, message: Message) -> None: ...

    def refuse(self, kind: str, error: ProtocolError, request_id: int | None) -> None:
        """Answer a message we will not act on with a typed error."""

    def hang_up(self, error: ProtocolError | None) -> None:
        """Send C{error} if any, then close once everything is written."""

    def close_silent(self, seconds: float) -> None:
        """Drop a peer that said nothing for C{seconds}."""

    def abort(self) -> None:
        """Drop the connection now (a hung peer will not read a goodbye)."""

    def watch_silence(self, seconds: float | None) -> None:
        """Call C{silence} after C{seconds} without data; None: never."""

    def watch_slot(self, seconds: float | None) -> None:
        """(Re)start the slot timer: C{slot_idle} after C{seconds}; None: stop."""

    def peer_host(self) -> str: ...

    def complain(self, log_format: str, **fields: Any) -> None:
        """Log a line about this peer ({peer} is its address), rate-limited."""


class Central(Protocol):
    """What every session shares: registry, admission, statistics, tickets."""

    idle_timeout: float
    heartbeat_timeout: float
    slot_idle_timeout: float
    secret: ClusterSecret | None

    def may_use_client_name(self, name: str, token: str) -> bool: ...

    def register_secondary(self, hello: SecondaryHello, connection: Any) -> Any:
        """Register; return the record, or raise a L{ProtocolError}."""

    def secondary_gone(self, record: Any) -> None: ...

    def secondary_said(self, record: Any, message: Message) -> None:
        """A registered secondary's report (files, copies, checks, activity)."""

    def catalog_page(self, request: ListFiles) -> Catalog: ...

    def locate(
        self, request: Locate, ticket_holder: str | None, requester: str
    ) -> Located:
        """Sources of a file for C{requester} (a bounded sample of its
        holders), with a ticket for C{ticket_holder} if not None."""

    def in_catalog(self, name: str) -> bool: ...

    def ask_slot(self, holder: Any, client: str, name: str, session: Any) -> None:
        """Queue C{holder}; call C{session.queue_moved} and C{slot_granted}."""

    def release_slot(self, holder: Any) -> None: ...

    def download_ended(self, client: str, token: str, report: Report) -> None: ...

    def bad_replica(self, client: str, report: BadReplica) -> None:
        """A client active on the file says a copy is corrupt (rate-limited)."""

    def download_progress(self, holder: Any, progress: Progress) -> None:
        """The client holding C{holder}'s slot says how far its download is."""
