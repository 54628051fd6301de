"""The daemons' watch on their reactor, on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from redesdl.reactor_lag import STALL, TICK, ReactorLag


def _watching() -> tuple[Clock, ReactorLag]:
    clock = Clock()
    lag = ReactorLag(clock)
    lag.startService()
    return clock, lag


def test_a_free_reactor_shows_no_lag() -> None:
    clock, lag = _watching()
    for _ in range(100):
        clock.advance(TICK)
    assert lag.max_lag == 0 and lag.stalls == 0


def test_a_held_turn_shows_as_lag_and_a_stall() -> None:
    clock, lag = _watching()
    clock.advance(TICK)
    clock.advance(TICK + 0.3)  # a turn held the reactor 0.3 s past the due time
    assert abs(lag.max_lag - 0.3) < 1e-9
    assert lag.stalls == 1
    clock.advance(TICK + STALL / 2)
    assert lag.stalls == 1
    rows = {m.name: m.samples[0].value for m in lag.metrics()}
    assert rows == {
        "redesdl_reactor_lag_max_seconds": lag.max_lag,
        "redesdl_reactor_stalls": 1,
    }


def test_long_holds_warn_once_a_minute() -> None:
    clock, lag = _watching()
    with capturedLogs() as events:
        for _ in range(3):
            clock.advance(TICK + 2.0)
        clock.advance(61)
    warnings = [e for e in events if "reactor was held" in e["log_format"]]
    assert len(warnings) == 2
    assert lag.stalls == 4


def test_stopping_cancels_the_timer() -> None:
    clock, lag = _watching()
    lag.stopService()
    assert clock.getDelayedCalls() == []
