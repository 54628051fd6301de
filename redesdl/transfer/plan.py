"""Which chunk each source fetches next: missing first, then endgame duplicates.

Sources pull: a source that finishes a chunk takes the next missing one, so a
fast source does more of the file. A chunk that fails goes back to the front
of the queue for whichever source asks next. A source that sent corrupt data
or broke the protocol is banned for this download: it gets nothing more, and
its chunks go back too.

When nothing is missing but chunks are still in flight (typically on a slow
source), an idle source may fetch a second copy of one of them: the endgame. The
caller says which copies pay (L{redesdl.transfer.pace} judges by the sources'
pace); by default every one does.
Only the first fetcher of a chunk writes to the file; a duplicate is held in
memory (or in a scratch file when memory is short) and written only if it
verifies while the chunk is still unverified.
At most L{MAX_DUPLICATES} duplicates run at once, and a chunk has one copy at
most; but a copy on a source the caller judges stalled counts for neither,
so two sources stalling at the end cannot keep an idle source from copying.

Pure bookkeeping: no reactor, no sockets, no files.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: Endgame copies fetched at once, not counting those on a stalled source (each
#: holds one chunk, in memory or on disk).
MAX_DUPLICATES = 2


@dataclass(frozen=True)
class Claim:
    """Chunk C{index} handed to a source; C{direct} if it writes to the file."""

    index: int
    direct: bool


class TransferPlan:
    """The state of every chunk of one download: missing, in flight or done."""

    def __init__(self, missing: Iterable[int], *, endgame: bool = True) -> None:
        self._missing: deque[int] = deque(missing)
        #: Sources fetching each chunk; the first one writes to the file.
        self._in_flight: dict[int, list[str]] = {}
        #: The source writing each chunk straight to the file, while it does.
        self._direct: dict[int, str] = {}
        self._endgame = endgame
        self._banned: set[str] = set()
        self._completed: set[int] = set()

    @property
    def finished(self) -> bool:
        """True once every chunk is complete."""
        return not self._missing and not self._in_flight

    @property
    def done(self) -> int:
        """Chunks completed through this plan."""
        return len(self._completed)

    @property
    def banned(self) -> frozenset[str]:
        return frozenset(self._banned)

    def is_banned(self, source: str) -> bool:
        return source in self._banned

    def take(
        self,
        source: str,
        pays: Callable[[int, str], bool] | None = None,
        stalled: Callable[[int, str], bool] | None = None,
    ) -> Claim | None:
        """The next chunk for C{source}, or None if there is nothing for it.

        A missing chunk comes first; in the endgame, a chunk in flight on
        another source without a live copy (the one in flight longest) is
        offered as a duplicate, if C{pays(index, owner)} says a copy pays.
        A copy whose source C{stalled(index, holder)} judges stalled is not
        live: it neither counts toward L{MAX_DUPLICATES} nor keeps its chunk
        from being copied again.
        """
        if source in self._banned:
            return None
        if self._missing:
            index = self._missing.popleft()
            self._in_flight[index] = [source]
            self._direct[index] = source
            return Claim(index, True)
        if not self._endgame:
            return None
        live = self._live_copies(stalled)
        if sum(live.values()) >= MAX_DUPLICATES:
            return None
        for index, owners in self._in_flight.items():
            if source in owners or live[index]:
                continue
            # No writer: it failed, and every copy left on the chunk stalled.
            writer = self._direct.get(index)
            if writer is None or pays is None or pays(index, writer):
                owners.append(source)
                return Claim(index, False)
        return None

    def _live_copies(
        self, stalled: Callable[[int, str], bool] | None
    ) -> dict[int, int]:
        """Each chunk in flight's copies, those on a stalled source left out."""
        return {
            index: sum(
                1
                for holder in owners
                if holder != self._direct.get(index)
                and not (stalled is not None and stalled(index, holder))
            )
            for index, owners in self._in_flight.items()
        }

    def in_flight(self) -> list[tuple[int, str]]:
        """Every chunk in flight with each source fetching it, as (chunk,
        source) pairs, longest in flight first."""
        return [
            (index, holder)
            for index, owners in self._in_flight.items()
            for holder in owners
        ]

    def duplicates(self) -> int:
        """Endgame copies in flight now."""
        return sum(len(owners) - 1 for owners in self._in_flight.values())

    def is_pending(self, index: int) -> bool:
        """True while chunk C{index} is in flight and not complete."""
        return index in self._in_flight

    def writer(self, index: int) -> str | None:
        """The source writing chunk C{index} straight to the file, if any."""
        return self._direct.get(index)

    def holders(self, index: int) -> tuple[str, ...]:
        """The sources fetching chunk C{index} now."""
        return tuple(self._in_flight.get(index, ()))

    def complete(self, index: int, source: str) -> bool:
        """C{source}'s copy of chunk C{index} verified; False if it is too late.

        Only a source holding the chunk may complete it, and only once.
        """
        owners = self._in_flight.get(index)
        if owners is None or source not in owners or source in self._banned:
            return False
        del self._in_flight[index]
        self._direct.pop(index, None)
        self._completed.add(index)
        return True

    def fail(self, index: int, source: str) -> bool:
        """C{source} failed chunk C{index}; requeue it if nobody else has it.

        True if the chunk went back to be fetched again.
        """
        owners = self._in_flight.get(index)
        if owners is None or source not in owners:
            return False
        owners.remove(source)
        if self._direct.get(index) == source:
            del self._direct[index]
        if owners:
            return False
        del self._in_flight[index]
        self._missing.appendleft(index)
        return True

    def ban(self, source: str) -> list[int]:
        """C{source} lied or broke the protocol: nothing more for it.

        Returns the chunks it held, each failed as by L{fail}.
        """
        self._banned.add(source)
        held = [i for i, owners in self._in_flight.items() if source in owners]
        for index in held:
            self.fail(index, source)
        return held
