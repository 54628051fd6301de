"""Replication planning: every secondary comes to hold every file.

Whenever the registry changes, the planner looks for secondaries lacking a
name that others serve and asks each to copy a few files at a time from the
holders. It walks the catalog index, never rebuilding it, and skips at once
a secondary the index says holds every listed name. A secondary holding a
different content under that name is left alone (files are never
overwritten); a failed copy is retried after a delay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from redesdl.central.registry import Registry, SecondaryRecord
from redesdl.protocol.tickets import REPLICATION_TICKET_LIFETIME
from redesdl.protocol.wire import Replicate, Ticket


class ReplicationPlanner:
    """Decide which secondary copies which file from whom, and track it."""

    log = Logger()

    def __init__(
        self,
        registry: Registry,
        clock: Any,
        perSecondary: int = 2,
        retryDelay: float = 10.0,
        ticketFor: Callable[[str, str, int], Ticket | None] = (
            lambda sha256, holder, lifetime: None
        ),
    ) -> None:
        self._registry = registry
        self._ticketFor = ticketFor
        self._clock = clock
        self._perSecondary = perSecondary
        self._retryDelay = retryDelay
        self.inProgress: dict[tuple[str, str], str] = {}
        #: The names each secondary is copying now, by secondary id.
        self._copying: dict[str, set[str]] = {}
        self._retryAfter: dict[tuple[str, str], float] = {}
        self._pending: IDelayedCall | None = None
        registry.listeners.append(self.schedule)

    def schedule(self, delay: float = 0) -> None:
        """Plan soon; many changes in one reactor turn cause one plan."""
        if self._pending is None or not self._pending.active():
            self._pending = self._clock.callLater(delay, self.plan)

    def plan(self) -> None:
        now = self._clock.seconds()
        registry = self._registry
        listed = registry.file_count()
        for record in list(registry.secondaries.values()):
            if not record.catalogComplete:
                continue
            busy = len(self._copying.get(record.id, ()))
            if busy >= self._perSecondary or record.listed_held >= listed:
                continue
            for entry in registry.names_after(None):
                if busy >= self._perSecondary:
                    break
                key = (record.id, entry.name)
                if (
                    entry.name in record.files
                    or key in self.inProgress
                    or self._retryAfter.get(key, 0) > now
                ):
                    continue
                self._ask(record, entry.info, entry.holders())
                busy += 1

    def backlog(self) -> int:
        """Copies still needed: (secondary, file) pairs a live holder could fill.

        O(secondaries): the index counts the listed names each one holds.
        """
        listed = self._registry.file_count()
        return sum(
            listed - record.listed_held
            for record in self._registry.secondaries.values()
            if record.catalogComplete
        )

    def _ask(
        self, record: SecondaryRecord, info: Any, holders: list[SecondaryRecord]
    ) -> None:
        self.inProgress[(record.id, info.name)] = info.sha256
        self._copying.setdefault(record.id, set()).add(info.name)
        self.log.info(
            "asking {target} to copy {name} from {sources}",
            target=record.name,
            name=info.name,
            sources=", ".join(h.name for h in holders),
        )
        ticket = self._ticketFor(info.sha256, record.name, REPLICATION_TICKET_LIFETIME)
        record.connection.sendMessage(
            Replicate(info, tuple(h.address for h in holders), ticket)
        )

    def finished(
        self, record: SecondaryRecord, name: str, ok: bool, reason: str
    ) -> None:
        """C{record} reports the end of its copy of C{name}."""
        key = (record.id, name)
        if self.inProgress.pop(key, None) is None:
            return
        self._copying[record.id].discard(name)
        if ok:
            self.log.info("{target} now holds {name}", target=record.name, name=name)
        else:
            self.log.warn(
                "{target} could not copy {name}: {reason}; retrying in {delay}s",
                target=record.name,
                name=name,
                reason=reason,
                delay=self._retryDelay,
            )
            self._retryAfter[key] = self._clock.seconds() + self._retryDelay
            self.schedule(self._retryDelay)
        self.schedule()

    def forget(self, record: SecondaryRecord) -> None:
        """C{record} disconnected: its copies in progress are void."""
        for name in self._copying.pop(record.id, ()):
            del self.inProgress[(record.id, name)]
        self.schedule()
