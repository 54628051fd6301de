"""The admission queue: at most N client downloads at once, the rest wait in order.

A client asks to be admitted before it downloads and holds its slot until it
reports the end of its download or disconnects. The first in line starts as
soon as a slot frees. Replication between secondaries never takes a slot.

Every event (ask, admit, release) does bounded work, however long the line:
when the head leaves, every waiter moves up one place, so telling them all
would cost O(waiters) per event and O(waiters^2) to drain the line. Instead
a waiter is told its position when it joins, and afterwards only when its
position changed and the new one is within the first L{FRONT} places or is a
power of two. Each event visits at most FRONT + log2(waiters) places (each
found in O(log waiters)), and a waiter hears at most FRONT + log2(position)
updates in all; the last position it heard is never below its true one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedDict
from twisted.internet.defer import Deferred
from twisted.logger import Logger

FRONT = 16
"""Waiters this close to a slot hear every change of their position."""


@dataclass
class SlotRequest:
    """One client's place: waiting, then active until released."""

    holder: Any
    client: str
    file: str
    asked: float
    admitted: Deferred[float] = field(default_factory=Deferred)
    onPosition: Callable[[int], None] | None = None
    told: int = field(default=0, init=False)
    #: When it was given its slot (the queue's clock), once it was.
    since: float | None = field(default=None, init=False)
    #: Its client's last progress report: (bytes done, bytes/s, sources).
    progress: tuple[int, float, int] | None = field(default=None, init=False)


class Line:
    """A read-only view of queue entries in order: its length costs O(1)."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, entries: Collection[SlotRequest]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[SlotRequest]:
        return iter(self._entries)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Line | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Line({list(self)!r})"


class AdmissionQueue:
    """Admit at most C{maxActive} downloads; queue the others in arrival order.

    A holder (a client's connection) has at most one request, active or
    waiting; releasing a holder that has none costs O(1) and touches nothing.
    C{touched} counts the waiting places each event looked at, for tests.
    """

    log = Logger()

    def __init__(self, maxActive: int, clock: Any, front: int = FRONT) -> None:
        self.maxActive = maxActive
        self._clock = clock
        self._front = front
        self._active: dict[Any, SlotRequest] = {}
        self._waiting: SortedDict = SortedDict()
        self._places: dict[Any, int] = {}
        self._arrivals = 0
        self.touched = 0
        #: When a slot was last given or freed: a line that waits long past
        #: it is stuck.
        self.last_moved = clock.seconds()

    @property
    def active(self) -> Line:
        """Downloads holding a slot, in the order they were admitted."""
        return Line(self._active.values())

    @property
    def waiting(self) -> Line:
        """Requests waiting for a slot, first in line first."""
        return Line(self._waiting.values())

    def ask(self, request: SlotRequest) -> Deferred[float]:
        """Fire C{request.admitted} with the seconds waited once a slot is free."""
        holder = request.holder
        if holder in self._active or holder in self._places:
            raise ValueError(f"{request.client} already holds or awaits a slot")
        arrival = self._arrivals
        self._arrivals += 1
        self._waiting[arrival] = request
        self._places[holder] = arrival
        self._advance()
        if holder in self._places:
            position = len(self._waiting)
            self.log.info(
                "queued {client} for {file} at position {position}; "
                "all {most} slots in use",
                client=request.client,
                file=request.file,
                position=position,
                most=self.maxActive,
            )
            self._tell(request, position)
        return request.admitted

    def release(self, holder: Any) -> None:
        """Free the slot or place C{holder} has (its download ended or it left)."""
        if self._active.pop(holder, None) is not None:
            self.last_moved = self._clock.seconds()
            if self._advance():
                self._announce(1)
            return
        arrival = self._places.pop(holder, None)
        if arrival is None:
            return
        left_from = self._waiting.index(arrival) + 1
        del self._waiting[arrival]
        self._announce(left_from)

    def progressed(self, holder: Any, done: int, rate: float, sources: int) -> None:
        """Note how far the download holding C{holder}'s slot is."""
        request = self._active.get(holder)
        if request is not None:
            request.progress = (done, rate, sources)

    def _advance(self) -> bool:
        """Admit waiters while slots are free; say whether anyone was."""
        admitted = False
        while self._waiting and len(self._active) < self.maxActive:
            _, request = self._waiting.popitem(0)
            del self._places[request.holder]
            self._active[request.holder] = request
            admitted = True
            request.since = self.last_moved = self._clock.seconds()
            waited = self._clock.seconds() - request.asked
            self.log.info(
                "admitted {client} for {file} after {waited:.1f} s; "
                "{active} of {most} slots in use",
                client=request.client,
                file=request.file,
                waited=waited,
                active=len(self._active),
                most=self.maxActive,
            )
            request.admitted.callback(waited)
        return admitted

    def _announce(self, first: int) -> None:
        """Tell the waiters from position C{first} on that moved, as the
        module docstring says: the front ones, and those at a power of two."""
        count = len(self._waiting)
        positions = list(range(first, min(self._front, count) + 1))
        milestone = 1
        while milestone <= count:
            if milestone >= first and milestone > self._front:
                positions.append(milestone)
            milestone *= 2
        self.touched += len(positions)
        moved = [(self._waiting.peekitem(p - 1)[1], p) for p in positions]
        for request, position in moved:
            self._tell(request, position)

    def _tell(self, request: SlotRequest, position: int) -> None:
        if request.told == position:
            return
        request.told = position
        if request.onPosition is not None:
            request.onPosition(position)
