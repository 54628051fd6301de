"""Which chunk each source fetches next.

Sources pull: a source that finishes a chunk takes the next missing one, so a
fast source does more of the file. A chunk that fails is released and goes
back to the front of the queue for whichever source asks next. Sources that
find nothing to take wait on L{ChunkScheduler.changed} until a chunk is
released or the download ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from twisted.internet.defer import Deferred


class ChunkScheduler:
    """The state of every chunk of one download: missing, in flight or done."""

    def __init__(self, missing: Iterable[int]) -> None:
        self._missing: deque[int] = deque(missing)
        self._inFlight: dict[int, str] = {}
        self._waiters: list[Deferred[None]] = []
        self.done = 0

    @property
    def finished(self) -> bool:
        return not self._missing and not self._inFlight

    @property
    def remaining(self) -> int:
        return len(self._missing) + len(self._inFlight)

    def take(self, source: str) -> int | None:
        """The next chunk for C{source} to fetch, or None if none is missing."""
        if not self._missing:
            return None
        index = self._missing.popleft()
        self._inFlight[index] = source
        return index

    def complete(self, index: int) -> None:
        """Chunk C{index} is on disk and verified."""
        del self._inFlight[index]
        self.done += 1
        if self.finished:
            self.wake()

    def release(self, index: int) -> None:
        """Chunk C{index} failed; another source should take it."""
        del self._inFlight[index]
        self._missing.appendleft(index)
        self.wake()

    def changed(self) -> Deferred[None]:
        """Fire when a chunk is released or the download finishes."""
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def wake(self) -> None:
        """Wake every waiting source (a chunk came back, or the download ended)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
