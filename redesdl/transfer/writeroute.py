"""Which way each stage of a download goes to disk: around the page cache or
through it.

Why: neither way is the fast one everywhere. Writing around the page cache
(``O_DIRECT``) waits for the disk on each write, but nothing else: on this
project's VM it wrote 1 GiB in 0.8-1.0 s of waiting, every run. Writing through
the cache costs a copy into free memory, cheap (0.3 s per GiB) while that
memory is still the guest's, but 1-5 s per GiB once the VM has handed it back
to its host (free page reporting), whose pages are then faulted in one by one;
and the disk work is only deferred, to the writeback and the final fsync. On a
spinning disk it is the other way round: direct writes of three chunks at once
seek between them, and the cache's sorted writeback is far cheaper.

So a download measures both as it goes. Stages go around the cache unless
writes through it have lately cost less than a quarter as much per byte (the
point where the two took the same wall time here: 0.3 against 0.8-1.0 s per
GiB, with the writeback still to come), and one stage in L{PROBE_EVERY} takes
the other way, to measure it again.

Pure: writer threads report how long their writes took and ask which way the
next stage goes; a lock guards the figures, nothing else is shared.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass


class Route(enum.Enum):
    """A way to the disk."""

    DIRECT = "around the page cache"
    CACHED = "through the page cache"


#: How many times cheaper per byte the page cache must be to be taken.
CACHED_ADVANTAGE = 4.0

#: One stage in this many goes the way not chosen, so that both stay measured.
PROBE_EVERY = 64

#: Bytes after which a route's older writes count half: recent enough to follow
#: memory running out mid-download, long enough to smooth one slow write.
HALF_LIFE_BYTES = 8 * 1024 * 1024


@dataclass
class _Cost:
    """Decaying sums of one route's writes: recent bytes weigh the most."""

    seconds: float = 0.0
    bytes: float = 0.0
    total_bytes: int = 0

    def add(self, nbytes: int, seconds: float) -> None:
        kept = 0.5 ** (nbytes / HALF_LIFE_BYTES)
        self.seconds = self.seconds * kept + seconds
        self.bytes = self.bytes * kept + nbytes
        self.total_bytes += nbytes

    @property
    def per_byte(self) -> float | None:
        return self.seconds / self.bytes if self.bytes else None


class WriteRouter:
    """Choose each stage's route from what each route's writes have cost.

    The first stages go around the cache until one such write is measured,
    then through it until one of those is; from then on, the cheaper way
    (weighing the cache by L{CACHED_ADVANTAGE}), and every L{PROBE_EVERY}th
    stage the other.
    """

    def __init__(
        self,
        probe_every: int = PROBE_EVERY,
        cached_advantage: float = CACHED_ADVANTAGE,
    ) -> None:
        self._probe_every = probe_every
        self._cached_advantage = cached_advantage
        self._lock = threading.Lock()
        self._costs = {route: _Cost() for route in Route}
        self._chosen = 0

    def record(self, route: Route, nbytes: int, seconds: float) -> None:
        """A write of C{nbytes} by C{route} took C{seconds} (any thread)."""
        if nbytes > 0:
            with self._lock:
                self._costs[route].add(nbytes, max(seconds, 0.0))

    def cost(self, route: Route) -> float | None:
        """Recent seconds per byte written by C{route}; None if never used."""
        with self._lock:
            return self._costs[route].per_byte

    def written(self, route: Route) -> int:
        """All bytes written by C{route}."""
        with self._lock:
            return self._costs[route].total_bytes

    def choose(self) -> Route:
        """The route of the next stage (any thread)."""
        with self._lock:
            number = self._chosen
            self._chosen += 1
            direct = self._costs[Route.DIRECT].per_byte
            cached = self._costs[Route.CACHED].per_byte
        if direct is None:
            return Route.DIRECT
        if cached is None:
            return Route.CACHED
        if cached * self._cached_advantage < direct:
            chosen, other = Route.CACHED, Route.DIRECT
        else:
            chosen, other = Route.DIRECT, Route.CACHED
        return other if number % self._probe_every == self._probe_every - 1 else chosen

    def summary(self) -> str:
        """What went each way, and what it cost lately, for the log."""
        parts = []
        with self._lock:
            for route, cost in self._costs.items():
                if cost.total_bytes:
                    per_gib = (cost.per_byte or 0.0) * 2**30
                    parts.append(
                        f"{cost.total_bytes / 2**20:.1f} MiB {route.value} "
                        f"({per_gib:.2f} s per GiB lately)"
                    )
        return ", ".join(parts) or "nothing written"
