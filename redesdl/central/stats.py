"""What the central counts: downloads per file and per client, secondaries' activity.

Clients report the end of each download (completed or failed, with the
reason); secondaries report what they served. Both are folded into the
central's L{StatsFile}; docs/stats.md describes every field, and
L{fresh_central_stats} declares each one's type, checked when the file loads.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from redesdl.jsonfile import counter, mapping, number, optional, record, sequence, text
from redesdl.stats import StatsFile, StatsShape

MAX_FAILURES_KEPT = 200
#: Distinct files remembered per client (the ones it downloaded last).
MAX_FILES_PER_CLIENT = 100

_TALLY = record({"completed": counter, "failed": counter, "bytes": counter})
_CLIENT_TALLY = record(
    {"completed": counter, "failed": counter, "bytes": counter},
    {"files": mapping(counter)},
)
_SERVED = record({"chunks": counter, "bytes": counter})

fresh_central_stats = StatsShape(
    {
        "files": (dict, mapping(_TALLY)),
        "clients": (dict, mapping(_CLIENT_TALLY)),
        "failures": (
            list,
            sequence(
                record({"time": number, "file": text, "client": text, "reason": text})
            ),
        ),
        "secondaries": (
            dict,
            mapping(
                record(
                    {
                        "registrations": counter,
                        "last_registered": optional(number),
                        "served": mapping(_SERVED),
                    }
                )
            ),
        ),
        "client_tokens": (dict, mapping(text)),
    }
)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CentralStats:
    """Typed updates to the central's statistics document."""

    def __init__(self, stats: StatsFile) -> None:
        self.file = stats
        self.data = stats.data
        #: Downloads completed, failed and bytes fetched, over every file: kept
        #: as reports arrive, so a metrics scrape reads them in O(1).
        self.totals = {"completed": 0, "failed": 0, "bytes": 0}
        for entry in self.data["files"].values():
            for key in self.totals:
                self.totals[key] += entry[key]

    def mayUseClientName(self, client: str, token: str) -> bool:
        """False if C{client} is owned by a token other than C{token}.

        A name is owned by the token of the first client whose download was
        counted under it, so no client can add to another's statistics.
        """
        owner = self.data.setdefault("client_tokens", {}).get(client)
        return owner is None or owner == token_digest(token)

    def downloadEnded(
        self,
        client: str,
        token: str,
        name: str,
        ok: bool,
        size: int,
        fetched: int,
        reason: str,
    ) -> None:
        self.data.setdefault("client_tokens", {}).setdefault(
            client, token_digest(token)
        )
        per_file = self.data["files"].setdefault(
            name, {"completed": 0, "failed": 0, "bytes": 0}
        )
        per_client = self.data["clients"].setdefault(
            client, {"completed": 0, "failed": 0, "bytes": 0}
        )
        for entry in (per_file, per_client, self.totals):
            entry["completed" if ok else "failed"] += 1
            entry["bytes"] += fetched
        if ok:
            self._count_file(per_client.setdefault("files", {}), name)
        if not ok:
            failures = self.data["failures"]
            failures.append(
                {"time": time.time(), "file": name, "client": client, "reason": reason}
            )
            del failures[:-MAX_FAILURES_KEPT]
        self.file.changed()

    @staticmethod
    def _count_file(files: dict[str, int], name: str) -> None:
        """One more completed download of C{name}, kept among the most recent."""
        files[name] = files.pop(name, 0) + 1
        if len(files) > MAX_FILES_PER_CLIENT:
            del files[next(iter(files))]

    def secondaryRegistered(self, name: str) -> None:
        entry = self._secondary(name)
        entry["registrations"] += 1
        entry["last_registered"] = time.time()
        self.file.changed()

    def activityReported(self, secondary: str, served: list[dict[str, Any]]) -> None:
        entry = self._secondary(secondary)
        for item in served:
            per_file = entry["served"].setdefault(
                item["file"], {"chunks": 0, "bytes": 0}
            )
            per_file["chunks"] += item["chunks"]
            per_file["bytes"] += item["bytes"]
        self.file.changed()

    def _secondary(self, name: str) -> dict[str, Any]:
        return self.data["secondaries"].setdefault(
            name, {"registrations": 0, "last_registered": None, "served": {}}
        )
