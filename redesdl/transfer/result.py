"""What a download did: its result and its timeline of chunk events.

``get --json`` prints the result; the client's statistics keep the timeline
as the evidence of what happened to each chunk (tests read it too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Most chunk events kept in a download's timeline.
MAX_TIMELINE_EVENTS = 20000


@dataclass
class DownloadResult:
    """What a finished download did, as ``get --json`` reports it."""

    name: str
    path: str
    size: int
    sha256: str
    seconds: float
    bytes_fetched: int
    sources: dict[str, int]
    bytes_reused: int = 0
    queued_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "seconds": round(self.seconds, 3),
            "bytes_fetched": self.bytes_fetched,
            "bytes_reused": self.bytes_reused,
            "queued_seconds": round(self.queued_seconds, 3),
            "sources": dict(self.sources),
        }


class Timeline:
    """Chunk events (start, duplicate, failed, verified, reused) with their time."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._started_at = clock.seconds()
        self.events: list[dict[str, Any]] = []

    def add(
        self, event: str, index: int | None, source: str | None, **details: Any
    ) -> None:
        if len(self.events) >= MAX_TIMELINE_EVENTS:
            return
        self.events.append(
            {
                "t": round(self._clock.seconds() - self._started_at, 3),
                "event": event,
                "chunk": index,
                "source": source,
                **details,
            }
        )
