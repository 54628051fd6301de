"""Download tickets: the central's short-lived permission to fetch one file.

With ``--require-tickets`` a secondary serves a file's manifest and chunks
only to a client holding a ticket the central issued for that file's content
and that client's name, not yet expired, as HDFS block tokens do. A ticket is
an HMAC over (sha256, holder, expiry) with a key derived from the cluster
secret, so any secondary can check it without asking the central.
"""

from __future__ import annotations

from redesdl.protocol.auth import ClusterSecret
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import Ticket

#: Seconds a ticket issued to a client stays valid; clients renew them by
#: locating the file again every few seconds while they download.
TICKET_LIFETIME = 300
#: Replication runs unattended for as long as a copy takes.
REPLICATION_TICKET_LIFETIME = 3600


class Tickets:
    """Issue and check tickets under one cluster secret."""

    def __init__(self, secret: ClusterSecret) -> None:
        self._key = secret.derive("download tickets")

    def issue(self, sha256: str, holder: str, expires: int) -> Ticket:
        return Ticket(expires, self._key.mac(sha256, holder, expires))

    def check(
        self, ticket: Ticket | None, sha256: str, holder: str, now: float
    ) -> None:
        """Return if C{ticket} lets C{holder} fetch C{sha256}; else a typed error."""
        if ticket is None:
            raise ProtocolError(
                "ticket_required", "this secondary serves only ticket holders"
            )
        if not self._key.verify(ticket.mac, sha256, holder, ticket.expires):
            raise ProtocolError(
                "ticket_invalid", "the ticket is not for this file and client"
            )
        if ticket.expires <= now:
            raise ProtocolError("ticket_expired", "the ticket has expired")
