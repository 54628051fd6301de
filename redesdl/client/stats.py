"""The client's statistics: one record per download, kept across runs.

The file defaults to ``$XDG_STATE_HOME/redesdl/client-stats.json`` (that is,
``~/.local/state/redesdl/client-stats.json``) and can be chosen with
``--stats``. docs/stats.md describes every field; L{fresh_client_stats}
declares the type of each one this module computes on, checked when it loads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from redesdl import jsonfile as j
from redesdl.stats import StatsFile, StatsShape

MAX_DOWNLOADS_KEPT = 1000


def default_stats_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "redesdl" / "client-stats.json"


_DOWNLOAD = j.record(
    {"file": j.text, "result": j.text},
    {
        "size": j.counter,
        "seconds": j.number,
        "reason": j.optional(j.text),
        "bytes_fetched": j.counter,
    },
)

fresh_client_stats = StatsShape(
    {
        "downloads": (list, j.sequence(_DOWNLOAD)),
        "totals": (
            lambda: {"completed": 0, "failed": 0, "bytes": 0},
            j.record({"completed": j.counter, "failed": j.counter, "bytes": j.counter}),
        ),
    }
)


class ClientStats:
    """Typed updates to the client's statistics document."""

    def __init__(self, stats: StatsFile) -> None:
        self.file = stats
        self.data = stats.data

    def downloadEnded(self, record: dict[str, Any]) -> None:
        downloads = self.data["downloads"]
        downloads.append(record)
        del downloads[:-MAX_DOWNLOADS_KEPT]
        totals = self.data["totals"]
        totals["completed" if record["result"] == "ok" else "failed"] += 1
        totals["bytes"] += record.get("bytes_fetched", 0)
        self.file.changed()

    def summary(self) -> list[str]:
        totals = self.data["totals"]
        lines = [
            f"{totals['completed']} downloads completed, {totals['failed']} "
            f"failed, {totals['bytes']} bytes fetched (kept in "
            f"{self.file.path.path})"
        ]
        for record in self.data["downloads"][-10:]:
            outcome = "ok" if record["result"] == "ok" else record.get("reason", "")
            lines.append(
                f"  {record['file']}: {record.get('size', 0)} bytes in "
                f"{record.get('seconds', 0):.2f} s, {outcome}"
            )
        return lines
