"""What the dashboard shows that the central would otherwise forget at once.

The registry forgets a secondary when it leaves, the statistics keep totals
but no order, and activity reports only add to counters. The dashboard needs
the recent past too: secondaries that went away, the last downloads that
ended, copies set aside as corrupt, and bytes served over the last seconds.
L{Observations} keeps each in a bounded list as events arrive, so nothing
here grows with the cluster's history and no request walks anything large.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

#: Downloads that ended, newest last.
RECENT_DOWNLOADS = 50
#: Secondaries remembered after they left (oldest forgotten first).
DEPARTED_KEPT = 256
#: Copies set aside (corrupt reports, failed checks) remembered for alerts.
SET_ASIDE_KEPT = 20
#: Seconds of activity reports a served rate is averaged over.
RATE_WINDOW = 10.0


class ServedRates:
    """Bytes each secondary served: in all since the central started, and per
    second over the last L{RATE_WINDOW} seconds, from its activity reports."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self.totals: dict[str, int] = {}
        self._reports: dict[str, deque[tuple[float, int]]] = {}

    def add(self, secondary: str, served: int) -> None:
        self.totals[secondary] = self.totals.get(secondary, 0) + served
        reports = self._reports.setdefault(secondary, deque())
        reports.append((self._clock.seconds(), served))
        self._expire(reports)

    def rate(self, secondary: str) -> float:
        reports = self._reports.get(secondary)
        if not reports:
            return 0.0
        self._expire(reports)
        return sum(served for _, served in reports) / RATE_WINDOW

    def rates(self) -> dict[str, float]:
        """Every secondary that served something within the window."""
        rates = {name: self.rate(name) for name in list(self._reports)}
        for name, rate in rates.items():
            if not rate:
                del self._reports[name]
        return {name: rate for name, rate in rates.items() if rate}

    def _expire(self, reports: deque[tuple[float, int]]) -> None:
        oldest = self._clock.seconds() - RATE_WINDOW
        while reports and reports[0][0] <= oldest:
            reports.popleft()


class Observations:
    """Bounded recent history for the dashboard, fed by the central's services."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_DOWNLOADS)
        #: By name: what was known of a secondary when it left.
        self.departed: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.set_aside: deque[dict[str, Any]] = deque(maxlen=SET_ASIDE_KEPT)
        self.served = ServedRates(clock)

    def download_ended(
        self, client: str, file: str, ok: bool, fetched: int, reason: str
    ) -> None:
        self.recent.append(
            {
                "client": client,
                "file": file,
                "ok": ok,
                "bytes": fetched,
                "reason": reason,
                "time": self._clock.seconds(),
            }
        )

    def secondary_registered(self, name: str) -> None:
        self.departed.pop(name, None)

    def secondary_gone(self, record: Any) -> None:
        self.departed.pop(record.name, None)
        self.departed[record.name] = {
            "name": record.name,
            "address": f"{record.host}:{record.port}",
            "files": len(record.files),
            "last_heartbeat": record.lastHeard,
            "boot": record.boot,
            "gone": self._clock.seconds(),
        }
        while len(self.departed) > DEPARTED_KEPT:
            self.departed.popitem(last=False)

    def copy_set_aside(self, secondary: str, file: str, why: str) -> None:
        self.set_aside.append(
            {
                "secondary": secondary,
                "file": file,
                "why": why,
                "time": self._clock.seconds(),
            }
        )
