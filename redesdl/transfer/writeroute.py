"""Whether a download's next chunks go to disk through the page cache or
around it.

Why: writing through the page cache costs a copy into free memory, about
0.15 CPU-s per GiB on this project's VM. But that VM hands free memory back to
its host (free page reporting), and once it has, every page written is faulted
in again by the host: about 1.5-3 CPU-s per GiB, and downloads took twice as
long (1.96 s against 0.98 s for 1 GiB, medians of 4 runs). Writing around the
cache (``O_DIRECT``) avoids that, but waits for the disk on every write: where
the cache is cheap it was 3-15% slower here, and on a spinning disk far
slower.

So a download starts through the cache and watches what its writes cost in
CPU time. Once they have cost over L{CACHED_LIMIT} per byte for
L{MIN_MEASURED} bytes, every chunk goes around the cache from its next block.
The switch is one-way: mixing the two ways in one file was slower here than
either alone (direct writes and the writeback of cached ones compete for the
disk and the inode's lock), so there are no probes back.

Pure: writer threads report what their writes cost, and ask which way their
next bytes go. A lock guards the figures, nothing else is shared.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


class Route(enum.Enum):
    """A way to the disk."""

    CACHED = "through the page cache"
    DIRECT = "around the page cache"

    @property
    def clock(self) -> Callable[[], float]:
        """What a write by this route is measured on.

        A write through the cache costs the CPU that copies into it and
        faults in its pages: thread time, which leaves out waiting for the
        inode's lock or the disk. A direct write costs the wait for the disk:
        wall time (reported in the log only).
        """
        return time.thread_time if self is Route.CACHED else time.perf_counter


#: CPU seconds per byte through the page cache above which it is left: 0.6 s
#: per GiB. A copy into the cache cost 0.13-0.18 here with memory to spare,
#: 0.22-0.27 with the client's memory capped at 100-192 MiB, and about 1.5-3
#: once the host had taken the memory back. Leaving too early costs 3-15%
#: (direct writes where the cache was cheap); staying too long, up to half.
CACHED_LIMIT = 0.6 / 2**30

#: Bytes written through the cache before its cost is judged.
MIN_MEASURED = 8 * 1024 * 1024

#: Bytes after which older writes count half: recent enough to follow memory
#: running out mid-download, long enough to smooth one slow write.
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
    """Route chunks through the page cache until it proves expensive.

    Writer threads call L{record} after each write and L{chunk_route} before
    the next. L{left_cache_at} is the cost that made the download leave.
    """

    def __init__(
        self, limit: float = CACHED_LIMIT, min_measured: int = MIN_MEASURED
    ) -> None:
        self._limit = limit
        self._min_measured = min_measured
        self._lock = threading.Lock()
        self._costs = {route: _Cost() for route in Route}
        #: The cache's cost per byte when it was left, if it was.
        self.left_cache_at: float | None = None

    def record(self, route: Route, nbytes: int, seconds: float) -> None:
        """A write of C{nbytes} by C{route} took C{seconds} (any thread)."""
        if nbytes <= 0:
            return
        with self._lock:
            cost = self._costs[route]
            cost.add(nbytes, max(seconds, 0.0))
            if (
                route is Route.CACHED
                and self.left_cache_at is None
                and cost.total_bytes >= self._min_measured
                and cost.seconds > self._limit * cost.bytes
            ):
                self.left_cache_at = cost.seconds / cost.bytes

    def cost(self, route: Route) -> float | None:
        """Recent seconds per byte written by C{route}; None if never used."""
        with self._lock:
            return self._costs[route].per_byte

    def written(self, route: Route) -> int:
        """All bytes written by C{route}."""
        with self._lock:
            return self._costs[route].total_bytes

    def chunk_route(self) -> Route:
        """The route of a chunk's next bytes."""
        with self._lock:
            return Route.CACHED if self.left_cache_at is None else Route.DIRECT

    def summary(self) -> str:
        """What went each way, and what it cost lately, for the log."""
        parts = []
        with self._lock:
            for route, cost in self._costs.items():
                if cost.total_bytes:
                    per_gib = (cost.per_byte or 0.0) * 2**30
                    unit = "CPU-s" if route is Route.CACHED else "s"
                    parts.append(
                        f"{cost.total_bytes / 2**20:.1f} MiB {route.value} "
                        f"({per_gib:.2f} {unit} per GiB lately)"
                    )
        return ", ".join(parts) or "nothing written"
