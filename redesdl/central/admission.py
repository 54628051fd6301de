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
class SlotRequest:
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
        self.active: list[SlotRequest] = []
        self.waiting: list[SlotRequest] = []

    def ask(self, request: SlotRequest) -> Deferred[float]:
        """Fire C{request.admitted} with the seconds waited once a slot is free."""
        self.waiting.append(request)
        self._advance()
        if request in self.waiting:
            self.log.info(
                "queued {client} for {file} at position {position}; "
                "all {most} slots in use",
                client=request.client,
                file=request.file,
                position=self.waiting.index(request) + 1,
                most=self.maxActive,
            )
        return request.admitted

    def release(self, holder: Any) -> None:
        """Free every slot or place C{holder} has (its download ended or it left)."""
        self.active = [t for t in self.active if t.holder is not holder]
        self.waiting = [t for t in self.waiting if t.holder is not holder]
        self._advance()

    def _advance(self) -> None:
        while self.waiting and len(self.active) < self.maxActive:
            request = self.waiting.pop(0)
            self.active.append(request)
            waited = self._clock.seconds() - request.asked
            self.log.info(
                "admitted {client} for {file} after {waited:.1f} s; "
                "{active} of {most} slots in use",
                client=request.client,
                file=request.file,
                waited=waited,
                active=len(self.active),
                most=self.maxActive,
            )
            request.admitted.callback(waited)
        for position, request in enumerate(self.waiting, start=1):
            if request.onPosition is not None:
                request.onPosition(position)
