"""What a secondary counts: chunks and bytes served per file and client, copies, errors.

The same counts, as deltas, are reported to the central (``activity``), as
the original brief asked: every few seconds, a second after serving goes
quiet, and when the secondary stops; docs/stats.md has every field,
and L{fresh_secondary_stats} declares each one's type, checked when it loads.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from redesdl.jsonfile import counter, flag, mapping, number, record, sequence, text
from redesdl.stats import StatsFile, StatsShape

MAX_RECENT_COPIES = 100
#: Clients kept per served file, the most recent ones.
MAX_CLIENTS_PER_FILE = 100

_SERVED = record({"chunks": counter, "bytes": counter})

fresh_secondary_stats = StatsShape(
    {
        "served": (
            dict,
            mapping(
                record(
                    {"chunks": counter, "bytes": counter, "clients": mapping(_SERVED)}
                )
            ),
        ),
        "replication": (
            lambda: {"copied": 0, "failed": 0, "bytes": 0, "recent": []},
            record(
                {
                    "copied": counter,
                    "failed": counter,
                    "bytes": counter,
                    "recent": sequence(
                        record(
                            {"time": number, "file": text, "ok": flag, "reason": text}
                        )
                    ),
                }
            ),
        ),
        "errors": (dict, mapping(counter)),
    }
)


class SecondaryStats:
    """Typed updates to a secondary's statistics document."""

    def __init__(self, stats: StatsFile) -> None:
        self.file = stats
        self.data = stats.data
        self._unreported: Counter[tuple[str, str, str]] = Counter()
        #: Called after each chunk served (the service reports soon after).
        self.served_listeners: list[Callable[[], None]] = []

    def chunkServed(self, name: str, client: str, size: int) -> None:
        per_file = self.data["served"].setdefault(
            name, {"chunks": 0, "bytes": 0, "clients": {}}
        )
        clients = per_file["clients"]
        # Most recent last: any hello can bring a new name, so only the last
        # MAX_CLIENTS_PER_FILE are kept (the file's own counts keep them all).
        per_client = clients.pop(client, None) or {"chunks": 0, "bytes": 0}
        clients[client] = per_client
        while len(clients) > MAX_CLIENTS_PER_FILE:
            del clients[next(iter(clients))]
        for entry in (per_file, per_client):
            entry["chunks"] += 1
            entry["bytes"] += size
        self._unreported[(name, client, "chunks")] += 1
        self._unreported[(name, client, "bytes")] += size
        self.file.changed()
        for listener in self.served_listeners:
            listener()

    def copyEnded(self, name: str, ok: bool, size: int, reason: str) -> None:
        replication = self.data["replication"]
        replication["copied" if ok else "failed"] += 1
        if ok:
            replication["bytes"] += size
        replication["recent"].append(
            {"time": time.time(), "file": name, "ok": ok, "reason": reason}
        )
        del replication["recent"][:-MAX_RECENT_COPIES]
        self.file.changed()

    def error(self, kind: str) -> None:
        self.data["errors"][kind] = self.data["errors"].get(kind, 0) + 1
        self.file.changed()

    def takeActivity(self) -> list[dict[str, Any]]:
        """What was served since the last call, one item per file and client."""
        pairs = sorted({(name, client) for name, client, _ in self._unreported})
        activity = [
            {
                "file": name,
                "client": client,
                "chunks": self._unreported[(name, client, "chunks")],
                "bytes": self._unreported[(name, client, "bytes")],
            }
            for name, client in pairs
        ]
        self._unreported.clear()
        return activity
