"""The dashboard's charts: a few numbers sampled every 2 s into a ring buffer.

The page draws served bytes per second (in all and for the busiest
secondaries), the admission line and the downloads running over the last
minutes. L{SeriesSampler} reads them from the central's live state every
L{INTERVAL} seconds and keeps L{KEPT} samples, so the memory is fixed and a
request only slices the buffer.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.internet import TimerService

INTERVAL = 2.0
#: Ten minutes of samples.
KEPT = 300
#: Secondaries a sample (and an answer) names.
BUSIEST = 10


@dataclass(frozen=True)
class Sample:
    """One moment's numbers."""

    time: float
    served_rate: float
    per_secondary: dict[str, float]
    queue: int
    active: int


class SeriesSampler(TimerService):
    """Sample C{factory}'s state every L{INTERVAL} seconds while running."""

    def __init__(self, factory: Any, clock: Any) -> None:
        super().__init__(INTERVAL, self.sample)
        self.clock = clock
        self._factory = factory
        self.samples: deque[Sample] = deque(maxlen=KEPT)

    def sample(self) -> None:
        factory = self._factory
        rates = factory.observed.served.rates()
        busiest = heapq.nlargest(BUSIEST, rates.items(), key=lambda item: item[1])
        self.samples.append(
            Sample(
                self.clock.seconds(),
                sum(rates.values()),
                dict(busiest),
                len(factory.admission.waiting),
                len(factory.admission.active),
            )
        )

    def series(self, seconds: float) -> dict[str, Any]:
        """The samples of the last C{seconds}, as the API answers them."""
        since = self.clock.seconds() - seconds
        chosen: list[Sample] = []
        for sample in reversed(self.samples):
            if sample.time < since:
                break
            chosen.append(sample)
        chosen.reverse()
        totals: dict[str, float] = {}
        for sample in chosen:
            for name, rate in sample.per_secondary.items():
                totals[name] = totals.get(name, 0.0) + rate
        names = heapq.nlargest(BUSIEST, totals, key=totals.__getitem__)

        def column(read: Callable[[Sample], Any]) -> list[Any]:
            return [read(sample) for sample in chosen]

        return {
            "interval": INTERVAL,
            "time": column(lambda s: s.time),
            "served_rate": column(lambda s: s.served_rate),
            "per_secondary": {
                name: column(lambda s, n=name: s.per_secondary.get(n, 0.0))
                for name in sorted(names)
            },
            "queue": column(lambda s: s.queue),
            "active": column(lambda s: s.active),
        }
