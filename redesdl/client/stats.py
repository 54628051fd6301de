"""The client's statistics: one record per download, kept across runs.

They live in an SQLite database (L{redesdl.client.statsdb}) that every client
process on the machine shares, by default
``$XDG_STATE_HOME/redesdl/client-stats.sqlite`` (that is,
``~/.local/state/redesdl/client-stats.sqlite``), chosen with ``--stats``.
``redesdl stats --json`` prints them as one JSON document; docs/stats.md
describes every field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from redesdl.client.statsdb import ClientStatsStore

#: Downloads the console's ``stats`` lists; ``redesdl stats`` takes a count.
SUMMARY_DOWNLOADS = 10


def default_stats_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "redesdl" / "client-stats.sqlite"


class ClientStats:
    """What the client records and shows: downloads ended, per file, in total."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.store = ClientStatsStore(path)

    def downloadEnded(self, record: dict[str, Any]) -> None:
        self.store.add(record)

    def summary(self, last: int = SUMMARY_DOWNLOADS) -> list[str]:
        totals = self.store.totals()
        lines = [
            f"{totals['completed']} downloads completed, {totals['failed']} "
            f"failed, {totals['bytes']} bytes fetched (kept in {self.path})"
        ]
        for record in self.store.downloads(last):
            outcome = "ok" if record["result"] == "ok" else record.get("reason", "")
            lines.append(
                f"  {record['file']} -> {record.get('path', '?')}: "
                f"{record.get('size', 0)} bytes in "
                f"{record.get('seconds', 0):.2f} s, {outcome}"
            )
        if self.store.unreadable:
            lines.append(
                f"  ({self.store.unreadable} damaged download records left out)"
            )
        return lines

    def files_downloaded(self) -> list[str]:
        """Each file this client downloaded, with how many times (and failures)."""
        lines = []
        for name, counts in self.store.files().items():
            failed = f", {counts['failed']} failed" if counts["failed"] else ""
            lines.append(f"{name}: {counts['completed']} completed{failed}")
        return lines or ["no downloads yet"]

    def close(self) -> None:
        self.store.close()
