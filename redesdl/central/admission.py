"""The admission queue: at most N client downloads at once, the rest wait in order.

A client asks to be admitted before it downloads and holds its slot until it
reports the end of its download or disconnects. Waiting clients are told
their position whenever it changes; the first in line starts as soon as a
slot frees. Replication between secondaries never takes a slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger


@dataclass
class Ticket:
    """One client's place: waiting, then active until released."""

    holder: Any
    client: str
    file: str
    asked: float
    admitted: Deferred[float] = field(default_factory=Deferred)
    onPosition: Callable[[int], None] | None = None


class AdmissionQueue:
    """Admit at most C{maxActive} downloads; queue the others in arrival order."""

    log = Logger()

    def __init__(self, maxActive: int, clock: Any) -> None:
        self.maxActive = maxActive
        self._clock = clock
        self.active: list[Ticket] = []
        self.waiting: list[Ticket] = []

    def ask(self, ticket: Ticket) -> Deferred[float]:
        """Fire C{ticket.admitted} with the seconds waited once a slot is free."""
        self.waiting.append(ticket)
        self._advance()
        return ticket.admitted

    def release(self, holder: Any) -> None:
        """Free every slot or place C{holder} has (its download ended or it left)."""
        self.active = [t for t in self.active if t.holder is not holder]
        self.waiting = [t for t in self.waiting if t.holder is not holder]
        self._advance()

    def _advance(self) -> None:
        while self.waiting and len(self.active) < self.maxActive:
            ticket = self.waiting.pop(0)
            self.active.append(ticket)
            waited = self._clock.seconds() - ticket.asked
            self.log.info(
                "admitted {client} for {file} after {waited:.1f} s; "
                "{active} of {most} slots in use",
                client=ticket.client,
                file=ticket.file,
                waited=waited,
                active=len(self.active),
                most=self.maxActive,
            )
            ticket.admitted.callback(waited)
        for position, ticket in enumerate(self.waiting, start=1):
            if ticket.onPosition is not None:
                ticket.onPosition(position)
