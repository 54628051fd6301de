"""The admission queue: at most N at once, first come first served, slots freed."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent

from redesdl.central.admission import AdmissionQueue, SlotRequest


class Holder:
    """A connection stand-in: the queue tells holders apart by identity."""

    def __init__(self, name: str) -> None:
        self.name = name


HOLDERS = {name: Holder(name) for name in "abcd"}


def ask(queue: AdmissionQueue, clock: Clock, name: str, log: list) -> SlotRequest:
    entry = SlotRequest(
        HOLDERS[name],
        name,
        "f",
        clock.seconds(),
        onPosition=lambda place: log.append((name, place)),
    )
    queue.ask(entry).addCallback(lambda waited: log.append((name, "in", waited)))
    return entry


def clients(requests: list[SlotRequest]) -> list[str]:
    return [r.client for r in requests]


def test_no_more_than_max_active_and_order_is_kept() -> None:
    clock = Clock()
    queue = AdmissionQueue(2, clock)
    log: list = []
    for name in "abcd":
        ask(queue, clock, name, log)
    assert clients(queue.active) == ["a", "b"]
    assert clients(queue.waiting) == ["c", "d"]
    assert ("c", 1) in log and ("d", 2) in log
    clock.advance(5)
    queue.release(HOLDERS["b"])
    assert clients(queue.active) == ["a", "c"]
    assert ("c", "in", 5.0) in log
    assert log[-1] == ("d", 1)
    queue.release(HOLDERS["a"])
    queue.release(HOLDERS["c"])
    assert clients(queue.active) == ["d"]


def test_a_waiting_client_that_leaves_loses_its_place() -> None:
    clock = Clock()
    queue = AdmissionQueue(1, clock)
    log: list = []
    for name in "abc":
        ask(queue, clock, name, log)
    queue.release(HOLDERS["b"])
    queue.release(HOLDERS["a"])
    assert clients(queue.active) == ["c"]
    assert not any(entry[:2] == ("b", "in") for entry in log)


def test_the_operator_log_says_who_waits_and_who_goes() -> None:
    clock = Clock()
    queue = AdmissionQueue(1, clock)
    events: list[dict] = []
    queue.log = Logger(observer=events.append)  # type: ignore[misc]
    ask(queue, clock, "a", [])
    ask(queue, clock, "b", [])
    clock.advance(2)
    queue.release(HOLDERS["a"])
    assert [formatEvent(e) for e in events] == [
        "admitted a for f after 0.0 s; 1 of 1 slots in use",
        "queued b for f at position 1; all 1 slots in use",
        "admitted b for f after 2.0 s; 1 of 1 slots in use",
    ]
