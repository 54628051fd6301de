"""Which chunk each source fetches next, including the endgame.

Sources pull: a source that finishes a chunk takes the next missing one, so a
fast source does more of the file. A chunk that fails is released and goes
back to the front of the queue for whichever source asks next.

When nothing is missing but chunks are still in flight (typically on a slow
source), an idle source may fetch a second copy of one of them: the endgame.
The first copy to verify wins. Only the first fetcher of a chunk writes to
the file; a duplicate is held in memory until it wins, so a loser never
writes over a winner. At most L{MAX_DUPLICATES} duplicates run at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from twisted.internet.defer import Deferred

#: Endgame copies fetched at once (each holds up to one chunk in memory).
MAX_DUPLICATES = 2


class ChunkScheduler:
    """The state of every chunk of one download: missing, in flight or done."""

    def __init__(self, missing: Iterable[int], endgame: bool = True) -> None:
        self._missing: deque[int] = deque(missing)
        #: Sources fetching each chunk.
        self._inFlight: dict[int, list[str]] = {}
        #: The source writing each chunk straight to the file, while it does.
        self._direct: dict[int, str] = {}
        self._endgame = endgame
        self._waiters: list[Deferred[None]] = []
        self.done = 0

    @property
    def finished(self) -> bool:
        return not self._missing and not self._inFlight

    def take(self, source: str) -> tuple[int, bool] | None:
        """The next chunk for C{source}: (index, writes to the file), or None.

        A missing chunk comes first; in the endgame, a chunk in flight on
        another source (the one in flight longest) is offered as a duplicate.
        """
        if self._missing:
            index = self._missing.popleft()
            self._inFlight[index] = [source]
            self._direct[index] = source
            return index, True
        if not self._endgame or self._duplicates() >= MAX_DUPLICATES:
            return None
        for index, owners in self._inFlight.items():
            if owners == [self._direct.get(index)] and source not in owners:
                owners.append(source)
                return index, False
        return None

    def _duplicates(self) -> int:
        return sum(len(owners) - 1 for owners in self._inFlight.values())

    def isPending(self, index: int) -> bool:
        """True while chunk C{index} has not been completed by anyone."""
        return index in self._inFlight

    def writer(self, index: int) -> str | None:
        """The source writing chunk C{index} straight to the file, if any."""
        return self._direct.get(index)

    def complete(self, index: int) -> bool:
        """Chunk C{index} is on disk and verified; False if it already was."""
        if index not in self._inFlight:
            return False
        del self._inFlight[index]
        self._direct.pop(index, None)
        self.done += 1
        self.wake()
        return True

    def release(self, index: int, source: str) -> None:
        """C{source} failed chunk C{index}; if nobody else fetches it, requeue it."""
        owners = self._inFlight.get(index)
        if owners is None or source not in owners:
            return
        owners.remove(source)
        if self._direct.get(index) == source:
            del self._direct[index]
        if not owners:
            del self._inFlight[index]
            self._missing.appendleft(index)
        self.wake()

    def changed(self) -> Deferred[None]:
        """Fire when a chunk is released or completed, or the download ends."""
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def wake(self) -> None:
        """Wake every waiting source: there may be work for it now."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
