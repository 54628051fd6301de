"""Which of a file's many holders one downloader is told about.

A file on 1,000 secondaries does not need 1,000 sources per client: the
reply would outgrow a frame and the client would open a connection to each.
L{some_holders} gives each requester at most C{limit} holders, chosen by
rendezvous hashing: stable for one requester (its `locate` refreshes every
few seconds see the same sources, so it does not churn connections), and
different across requesters, so the load spreads over every holder.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Sequence
from typing import Any

#: Most sources one `located` answer lists.
MAX_LOCATED_SOURCES = 64
#: Most peers one replication order names.
MAX_REPLICATION_SOURCES = 16


def _score(requester: str, holder: Any) -> bytes:
    return hashlib.blake2b(
        f"{requester}\x00{holder.id}".encode(), digest_size=8
    ).digest()


def some_holders(holders: Sequence[Any], requester: str, limit: int) -> list[Any]:
    """At most C{limit} of C{holders} (each with an C{id}) for C{requester}."""
    if len(holders) <= limit:
        return list(holders)
    return heapq.nsmallest(limit, holders, key=lambda h: _score(requester, h))
