"""How long each source takes per chunk, to judge whether an endgame copy pays.

At the end of a download, an idle source may fetch a second copy of a chunk
still in flight elsewhere (see L{redesdl.transfer.plan}). Fetched blindly,
that copy mostly loses: between healthy sources the chunk's owner finishes
first, and the copy only took bandwidth and CPU from the last chunks. So a
copy is fetched only when it should arrive first:

 - the owner takes at least L{SLOWER} times as long per chunk as the idle
   source; or
 - the owner is overdue: its chunk has been in flight L{OVERDUE} times its
   usual time per chunk (it may have stalled; a copy is the way out before
   its progress timeout).

A source's usual time is the smoothed time from claiming a chunk to its
verification. The time an owner still needs for one chunk is not judged:
its chunks wait behind each other on its connection, so a chunk claimed
recently may be next or still queued, and an estimate from its claim was
wrong by a whole chunk time on a rate-limited source.

A copy that is itself overdue is judged stalled (L{ChunkPace.stalled}): it
no longer keeps its chunk from being copied again, nor counts toward the
plan's cap on copies, so sources stalling with copies at the end cannot keep
an idle source from finishing.

An owner with no verified chunk yet is taken to be as quick as the idle
source. An idle source with no verified chunk yet (one that just joined), or
a chunk whose claim it was never told of, is copied as it always was: there
is nothing to judge by, and a chunk never copied could hold up the end.

Pure arithmetic on the times it is given: no reactor, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable

#: An owner this many times past its usual time per chunk is taken as stalled.
OVERDUE = 2.0

#: An owner this many times slower per chunk than the idle source is copied.
SLOWER = 2.0

#: Weight of the newest chunk in a source's usual time per chunk.
SMOOTHING = 0.3


class ChunkPace:
    """When each chunk in flight was claimed, and each source's usual pace."""

    def __init__(self) -> None:
        self._claimed: dict[tuple[int, str], float] = {}
        self._usual: dict[str, float] = {}

    def claimed(self, index: int, source: str, now: float) -> None:
        """C{source} took chunk C{index} at C{now}."""
        self._claimed[index, source] = now

    def verified(self, index: int, source: str, now: float) -> None:
        """C{source}'s chunk C{index} verified at C{now}: one more sample."""
        since = self._claimed.pop((index, source), None)
        if since is None or now < since:
            return
        took = now - since
        usual = self._usual.get(source)
        self._usual[source] = (
            took if usual is None else usual + SMOOTHING * (took - usual)
        )

    def dropped(self, index: int, source: str) -> None:
        """C{source} no longer fetches chunk C{index} (it failed or lost)."""
        self._claimed.pop((index, source), None)

    def usual(self, source: str) -> float | None:
        """C{source}'s smoothed seconds per chunk, or None before its first."""
        return self._usual.get(source)

    def copy_pays(self, index: int, owner: str, idle: str, now: float) -> bool:
        """Whether C{idle} should fetch a copy of C{owner}'s chunk C{index}."""
        mine = self._usual.get(idle)
        claimed = self._claimed.get((index, owner))
        if mine is None or claimed is None:
            return True
        theirs = self._usual.get(owner, mine)
        return theirs >= SLOWER * mine or self.stalled(index, owner, idle, now)

    def stalled(self, index: int, holder: str, idle: str, now: float) -> bool:
        """Whether C{holder}'s chunk C{index} is overdue, as C{idle} judges
        it (by C{idle}'s own pace while C{holder} has none): False when
        there is nothing to judge by."""
        due = self._overdue_at(index, holder, idle)
        return due is not None and now >= due

    def next_look(
        self, in_flight: Iterable[tuple[int, str]], idle: str, now: float
    ) -> float | None:
        """The first time after C{now} that one of C{in_flight}'s (chunk,
        source) pairs becomes overdue, as C{idle} judges it (a chunk worth a
        copy, or a copy no longer worth waiting for); None if none will."""
        times = [
            self._overdue_at(index, owner, idle)
            for index, owner in in_flight
            if owner != idle
        ]
        return min((t for t in times if t is not None and t > now), default=None)

    def _overdue_at(self, index: int, holder: str, idle: str) -> float | None:
        """When C{holder}'s chunk C{index} becomes overdue, by its own pace or
        else C{idle}'s; None without a claim or a pace to judge by.

        One answer for every question (a copy pays, a holder stalled, when to
        look again): a look scheduled for this time finds it so."""
        claimed = self._claimed.get((index, holder))
        usual = self._usual.get(holder, self._usual.get(idle))
        if claimed is None or usual is None:
            return None
        return claimed + OVERDUE * usual
