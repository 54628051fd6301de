"""Replication planning: every secondary comes to hold every file.

Whenever the registry changes, the planner looks for secondaries lacking a
name that others serve and asks each to copy a few files at a time from the
holders, smallest names first. A secondary holding a different content under
that name is left alone (files are never overwritten); a failed copy is
retried after a delay, which holds back no other planning.

It never rebuilds the catalog: each secondary has a cursor in the catalog
index, and every listed name up to it that the secondary lacks is being
copied, waiting for its retry, or in the secondary's small set of names to
look at again (a name newly listed, a file it dropped, a copy that ended).
A plan resumes each walk from its cursor, so a secondary walks the catalog
once, not once per plan, and one that holds every listed name is skipped.

A plan visits only the secondaries an event woke: one that finished its
catalog, ended a copy, dropped a file or reached a retry's time, and, when a
name is newly listed, those that had room left after their last walk. A plan
reads at most L{ENTRIES_PER_TURN} index entries; a walk cut there goes on in
the next reactor turn, so a big join never holds the reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sortedcontainers import SortedList
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from redesdl.central.catalog_index import NameEntry
from redesdl.central.registry import Registry, SecondaryRecord
from redesdl.central.sampling import MAX_REPLICATION_SOURCES, some_holders
from redesdl.protocol.tickets import REPLICATION_TICKET_LIFETIME
from redesdl.protocol.wire import Replicate, Ticket

#: Names a secondary keeps to look at again; past this its cursor moves back
#: before the first of them instead, so memory stays bounded.
REVISIT_KEPT = 4096

#: Index entries one plan may read before it yields the reactor.
ENTRIES_PER_TURN = 2000


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
        removed: Callable[[str, str], bool] = lambda name, sha256: False,
    ) -> None:
        self._registry = registry
        #: True for a (name, sha256) an operator removed: never copied.
        self._removed = removed
        self._ticketFor = ticketFor
        self._clock = clock
        self._perSecondary = perSecondary
        self._retryDelay = retryDelay
        self.inProgress: dict[tuple[str, str], str] = {}
        #: When each copy in progress was asked for.
        self.since: dict[tuple[str, str], float] = {}
        #: By secondary id: failed copies in a row of each name (for alerts).
        self.failures: dict[str, dict[str, int]] = {}
        #: By secondary id: the names it copies now...
        self._copying: dict[str, set[str]] = {}
        #: ...the names it failed to copy, with the time to try again...
        self._retrying: dict[str, dict[str, float]] = {}
        #: ...the last name its walk reached (also sorted, by name, so a newly
        #: listed name visits only the walks that passed it)...
        self._cursor: dict[str, str] = {}
        self._cursors = SortedList()
        #: ...and names up to the cursor to look at again.
        self._revisit: dict[str, set[str]] = {}
        #: Secondaries the next plan visits, in the order they were woken...
        self._woken: dict[str, None] = {}
        #: ...and those whose last walk ended with room to copy more.
        self._idle: set[str] = set()
        self._pending: IDelayedCall | None = None
        #: Secondaries visited by plans so far, so tests can bound the work.
        self.visits = 0
        registry.on_catalog_done.append(self._completed)
        registry.index.on_listed.append(self._listed)
        registry.index.on_released.append(self._released)

    def schedule(self) -> None:
        """Plan soon; many changes in one reactor turn cause one plan."""
        if self._pending is None or not self._pending.active():
            self._pending = self._clock.callLater(0, self.plan)

    def plan(self) -> None:
        """Visit the secondaries woken since the last plan, within a budget."""
        now = self._clock.seconds()
        listed = self._registry.file_count()
        budget = ENTRIES_PER_TURN
        while self._woken and budget > 0:
            rid = next(iter(self._woken))
            self.visits += 1
            record = self._registry.secondaries.get(rid)
            if record is None or not record.catalogComplete:
                del self._woken[rid]
                continue
            self._retry_due(rid, now)
            room = self._perSecondary - len(self._copying.get(rid, ()))
            if room > 0 and record.listed_held < listed:
                room, budget = self._plan_for(record, room, budget)
                if budget <= 0 and room > 0:
                    break
            del self._woken[rid]
            if room > 0:
                self._idle.add(rid)
            else:
                self._idle.discard(rid)
        if self._woken:
            self.schedule()

    def _wake(self, rid: str) -> None:
        self._woken[rid] = None
        self.schedule()

    def _completed(self, record: SecondaryRecord) -> None:
        self._wake(record.id)

    def _plan_for(
        self, record: SecondaryRecord, room: int, budget: int
    ) -> tuple[int, int]:
        """Ask C{record} for up to C{room} copies; the room and budget left."""
        rid = record.id
        cursor = self._cursor.get(rid)
        revisit = self._revisit.pop(rid, set())
        for name in sorted(revisit):
            if room == 0:
                self._again(rid, name)
            elif cursor is not None and name <= cursor:
                budget -= 1
                entry = self._registry.index.get(name)
                if entry is not None and self._wanted(record, entry):
                    self._ask(record, entry)
                    room -= 1
        reached = cursor
        for entry in self._registry.names_after(cursor):
            if room == 0 or budget <= 0:
                break
            budget -= 1
            reached = entry.name
            if self._wanted(record, entry):
                self._ask(record, entry)
                room -= 1
        if reached != cursor:
            self._move(rid, reached)
        return room, budget

    def _wanted(self, record: SecondaryRecord, entry: NameEntry) -> bool:
        name = entry.name
        return (
            entry.listed
            and not self._removed(name, entry.info.sha256)
            and name not in record.files
            and (record.id, name) not in self.inProgress
            and name not in self._retrying.get(record.id, ())
        )

    def _retry_due(self, rid: str, now: float) -> None:
        retrying = self._retrying.get(rid)
        if not retrying:
            return
        for name, when in list(retrying.items()):
            if when <= now:
                del retrying[name]
                self._again(rid, name)

    def _again(self, rid: str, name: str) -> None:
        """Look at C{name} again for C{rid} if its walk went past it."""
        cursor = self._cursor.get(rid)
        if cursor is None or name > cursor:
            return
        revisit = self._revisit.setdefault(rid, set())
        revisit.add(name)
        if len(revisit) > REVISIT_KEPT:
            first = min(revisit)
            del self._revisit[rid]
            self._move(rid, self._registry.index.before(first))

    def _move(self, rid: str, cursor: str | None) -> None:
        old = self._cursor.pop(rid, None)
        if old is not None:
            self._cursors.remove((old, rid))
        if cursor is not None:
            self._cursor[rid] = cursor
            self._cursors.add((cursor, rid))

    def _listed(self, name: str) -> None:
        secondaries = self._registry.secondaries
        passed = [rid for _, rid in self._cursors.irange(minimum=(name,))]
        for rid in passed:
            record = secondaries.get(rid)
            if record is None or name not in record.files:
                self._again(rid, name)
        for rid in self._idle:
            record = secondaries.get(rid)
            if record is not None and name not in record.files:
                self._wake(rid)

    def _released(self, record: SecondaryRecord, name: str) -> None:
        if record.gone:
            return
        self._again(record.id, name)
        if record.id in self._idle:
            self._wake(record.id)

    def retrying(self) -> dict[str, dict[str, float]]:
        """By secondary id: the names whose copy failed, with when it is retried."""
        return self._retrying

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

    def _ask(self, record: SecondaryRecord, entry: NameEntry) -> None:
        info = entry.info
        holders = some_holders(entry.holders(), record.name, MAX_REPLICATION_SOURCES)
        self.inProgress[(record.id, info.name)] = info.sha256
        self.since[(record.id, info.name)] = self._clock.seconds()
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
        self.since.pop(key, None)
        failures = self.failures.setdefault(record.id, {})
        if ok:
            failures.pop(name, None)
        else:
            failures[name] = failures.get(name, 0) + 1
        self._copying[record.id].discard(name)
        if ok:
            self.log.info("{target} now holds {name}", target=record.name, name=name)
            self._again(record.id, name)
        else:
            self.log.warn(
                "{target} could not copy {name}: {reason}; retrying in {delay}s",
                target=record.name,
                name=name,
                reason=reason,
                delay=self._retryDelay,
            )
            retry_at = self._clock.seconds() + self._retryDelay
            self._retrying.setdefault(record.id, {})[name] = retry_at
            self._clock.callLater(self._retryDelay, self._wake, record.id)
        self._wake(record.id)

    def forget(self, record: SecondaryRecord) -> None:
        """C{record} disconnected: its copies in progress are void."""
        rid = record.id
        for name in self._copying.pop(rid, ()):
            del self.inProgress[(rid, name)]
            self.since.pop((rid, name), None)
        self.failures.pop(rid, None)
        self._move(rid, None)
        self._revisit.pop(rid, None)
        self._woken.pop(rid, None)
        self._idle.discard(rid)
