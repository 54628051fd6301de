"""The daemons' watch on their reactor, on a fake clock."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs

from redesdl.reactor_lag import SECONDARY_TICK, STALL, TICK, ReactorLag


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


def test_a_secondary_wakes_a_tenth_as_often_and_still_sees_a_long_turn() -> None:
    clock = Clock()
    lag = ReactorLag(clock, SECONDARY_TICK)
    lag.startService()
    wakes = 0
    while clock.seconds() < 1.0:
        (due,) = clock.getDelayedCalls()
        clock.advance(due.getTime() - clock.seconds())
        wakes += 1
    assert wakes == round(1.0 / SECONDARY_TICK) == round(0.1 / TICK)
    assert lag.max_lag == 0
    clock.advance(SECONDARY_TICK + 0.4)
    assert abs(lag.max_lag - 0.4) < 1e-9 and lag.stalls == 1


def test_each_daemon_watches_at_its_own_pace(tmp_path: Path) -> None:
    from redesdl.secondary.tap import Options, makeService

    config = Options()
    config.parseOptions(["--data", str(tmp_path), "--state-dir", str(tmp_path / "s")])
    clock = MemoryReactorClock()
    service = makeService(config, clock)
    (lag,) = [child for child in service if isinstance(child, ReactorLag)]
    assert lag._tick == SECONDARY_TICK
