"""The admission queue: at most N at once, first come first served, slots freed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent

from redesdl.central.admission import FRONT, AdmissionQueue, SlotRequest

from .test_central import A, client, make_factory, secondary


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


# -- work per event is bounded: only moved waiters are told (issue 11, point 5) --

WAITERS = 1_000
BOUND = FRONT + WAITERS.bit_length()


class FullQueue:
    """A full queue: one active holder, WAITERS waiting, every message kept."""

    def __init__(self, waiters: int = WAITERS, most: int = 1) -> None:
        self.clock = Clock()
        self.queue = AdmissionQueue(most, self.clock)
        self.queue.log = Logger(observer=lambda event: None)  # type: ignore[misc]
        self.told: list[tuple[int, int]] = []
        self.admitted: list[int] = []
        self.holders = [Holder(str(n)) for n in range(waiters + most)]
        for n in range(waiters + most):
            self.ask(n)

    def ask(self, n: int) -> None:
        request = SlotRequest(
            self.holders[n],
            str(n),
            "f",
            self.clock.seconds(),
            onPosition=lambda place: self.told.append((n, place)),
        )
        self.queue.ask(request).addCallback(lambda _: self.admitted.append(n))

    def fresh(self) -> None:
        self.told.clear()
        self.queue.touched = 0


def test_a_new_waiter_is_told_its_place_and_nobody_else_hears_anything() -> None:
    line = FullQueue()
    line.fresh()
    line.holders.append(Holder("late"))
    line.ask(len(line.holders) - 1)
    assert line.told == [(WAITERS + 1, WAITERS + 1)]
    assert line.queue.touched == 0


def test_when_the_head_goes_only_bounded_front_and_milestone_waiters_are_told() -> None:
    line = FullQueue()
    line.fresh()
    line.queue.release(line.holders[0])
    assert line.admitted[-1] == 1
    assert line.queue.touched <= BOUND
    places = [place for _, place in line.told]
    assert places == [*range(1, FRONT + 1), 32, 64, 128, 256, 512]
    assert all(waiter == place + 1 for waiter, place in line.told)


def test_a_waiter_leaving_tells_only_some_of_those_behind_it() -> None:
    line = FullQueue()
    line.fresh()
    line.queue.release(line.holders[700])
    assert line.told == []  # nobody behind place 700 reached a milestone
    line.queue.release(line.holders[10])
    assert line.queue.touched <= BOUND
    milestones = [32, 64, 128, 256, 512]
    assert [place for _, place in line.told] == [*range(10, FRONT + 1), *milestones]
    assert all(waiter > 10 for waiter, _ in line.told)


def test_draining_the_whole_line_tells_each_waiter_a_bounded_number_of_times() -> None:
    line = FullQueue()
    line.fresh()
    for n in range(WAITERS + 1):
        line.queue.release(line.holders[n])
    assert line.admitted == list(range(WAITERS + 1))
    assert line.queue.touched <= WAITERS * BOUND
    assert len(line.told) <= WAITERS * BOUND  # the old queue told ~500,000
    heard = Counter(waiter for waiter, _ in line.told)
    assert max(heard.values()) <= BOUND
    last = {waiter: place for waiter, place in line.told}
    assert all(last[n] == 1 for n in range(2, WAITERS + 1))


def test_positions_heard_never_understate_the_true_place() -> None:
    line = FullQueue(waiters=200, most=3)
    heard: dict[int, int] = {}
    for step, n in enumerate([5, 0, 150, 1, 60, 2, 3, 199, 4, 30]):
        line.queue.release(line.holders[n])
        heard.update(line.told)
        for place, request in enumerate(line.queue.waiting, start=1):
            waiter = int(request.client)
            assert heard.get(waiter, WAITERS) >= place, (step, waiter)
            if place <= FRONT:
                assert heard[waiter] == place


def test_releasing_a_holder_with_nothing_costs_nothing() -> None:
    line = FullQueue()
    line.fresh()
    line.queue.release(Holder("a secondary"))
    assert line.told == [] and line.admitted == [0] and line.queue.touched == 0


def test_closing_a_secondary_connection_never_reaches_the_queue(
    tmp_path: Path,
) -> None:
    factory = make_factory(tmp_path, Clock(), maxActive=1)
    released: list[Any] = []
    factory.admission.release = released.append  # type: ignore[method-assign]
    peer = secondary(factory, "s1", [A])
    peer.hang_up()
    assert released == []


def test_the_queue_length_is_known_without_walking_the_line() -> None:
    line = FullQueue()
    assert len(line.queue.waiting) == WAITERS
    assert len(line.queue.active) == 1
    assert line.queue.waiting != []


def test_through_the_central_only_moved_clients_get_queued(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock(), maxActive=1)
    secondary(factory, "s1", [A])
    peers = [client(factory, f"c{n}", f"token-of-c{n:03d}-0000") for n in range(41)]
    for peer in peers:
        peer.send({"type": "admit", "name": "a.bin"})
    assert [peer.replies()[-1]["position"] for peer in peers[1:]] == [*range(1, 41)]
    report = {"name": "a.bin", "ok": True, "size": 10, "bytes_fetched": 10}
    peers[0].send({"type": "report", **report, "reason": ""})
    assert [m["type"] for m in peers[1].replies()] == ["admitted"]
    heard = {n: peer.replies() for n, peer in enumerate(peers[2:], start=2)}
    told = {n: [m["position"] for m in got] for n, got in heard.items() if got}
    assert told == {n: [n - 1] for n in [*range(2, FRONT + 2), 33]}
