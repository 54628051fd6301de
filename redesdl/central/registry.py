"""The central's soft state: live secondaries and the catalog merged from theirs.

Nothing here is persisted: after a central restart the secondaries register
again and report their files, which rebuilds it all. Every change updates the
catalog index (L{redesdl.central.catalog_index}) in place, never rebuilding
it. Replicas of a name count as one source set only if their
``(size, sha256, root)`` agree; when they disagree, the content most live
secondaries hold is served and the conflict is logged, so bytes of different
contents are never mixed. A name nobody holds leaves the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from redesdl.central.catalog_index import CatalogIndex, NameEntry
from redesdl.manifest import FileInfo
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.sources import SourceAddress


@dataclass
class SecondaryRecord:
    """One registered secondary, as long as its connection lives."""

    id: str
    name: str
    host: str
    port: int
    connection: Any
    files: dict[str, FileInfo] = field(default_factory=dict)
    registeredAt: float = field(default_factory=time.time)
    #: When its last heartbeat arrived (the central's clock), if any yet.
    lastHeard: float | None = None
    #: The secondary's boot counter: a higher one than before means a restart.
    boot: int = 0
    #: Names whose copy here a client reported corrupt; not offered until checked.
    suspect: set[str] = field(default_factory=set)
    #: True once the secondary said its initial catalog is all reported.
    catalogComplete: bool = False
    #: How many listed names it holds (any content), kept by the index.
    listed_held: int = 0
    #: True once unregistered or replaced: no longer offered, while its files
    #: leave the index a slice at a time.
    gone: bool = False

    @property
    def address(self) -> SourceAddress:
        return SourceAddress(self.name, self.host, self.port)


@dataclass(frozen=True)
class CatalogEntry:
    """A name as clients see it: the content served and who serves it."""

    info: FileInfo
    holders: list[SecondaryRecord]

    def to_wire(self) -> dict[str, Any]:
        return {**self.info.to_wire(), "sources": len(self.holders)}


#: Names whose holders all disconnected, remembered so that ``locate`` says
#: ``no_source`` (they may come back) rather than ``not_found``; oldest first out.
ORPHANS_KEPT = 1 << 20

#: Index updates between two yields when a gone secondary's files leave it.
FORGET_SLICE = 256


def run_at_once(work: Iterator[None]) -> None:
    """Do all of C{work} now: the registry's default way to run a big job."""
    for _ in work:
        pass


class Registry:
    """Who is registered, what each holds, and which content each name serves."""

    log = Logger()

    def __init__(
        self, cooperate: Callable[[Iterator[None]], Any] = run_at_once
    ) -> None:
        #: Runs a big job (a gone secondary's files leaving the index) in
        #: slices: the central passes L{twisted.internet.task.cooperate}.
        self._cooperate = cooperate
        self.secondaries: dict[str, SecondaryRecord] = {}
        self.index = CatalogIndex()
        self._by_name: dict[str, SecondaryRecord] = {}
        #: Ids of every secondary ever registered, to log a return as such.
        self._seen: set[str] = set()
        self._orphans: dict[str, FileInfo] = {}
        self._reportedConflicts: set[tuple[str, frozenset[tuple[int, str, str]]]] = (
            set()
        )
        #: Called with a secondary that said its initial catalog is all sent.
        self.on_catalog_done: list[Callable[[SecondaryRecord], None]] = []

    def register(self, record: SecondaryRecord) -> SecondaryRecord | None:
        """Add C{record}; return the older record of the same id it replaces."""
        other = self._by_name.get(record.name)
        if other is not None and other.id != record.id:
            raise ProtocolError(
                "name_taken",
                f"a secondary named {record.name!r} is already registered",
            )
        previous = self.secondaries.get(record.id)
        if previous is not None:
            self._forget(previous)
        self.secondaries[record.id] = record
        self._by_name[record.name] = record
        for info in record.files.values():
            self._hold(record, info)
        if previous is not None:
            again = ", replacing its older connection"
        elif record.id in self._seen:
            again = ", registered again"
        else:
            again = ""
        self._seen.add(record.id)
        self.log.info(
            "secondary {name} registered at {host}:{port} (boot {boot}{again})",
            name=record.name,
            host=record.host,
            port=record.port,
            boot=record.boot,
            again=again,
        )
        return previous

    def unregister(self, record: SecondaryRecord) -> None:
        """Forget C{record} unless a newer registration replaced it already."""
        if self.secondaries.get(record.id) is record:
            del self.secondaries[record.id]
            self._forget(record)
            self.log.info("secondary {name} is gone", name=record.name)

    def addFiles(self, record: SecondaryRecord, infos: list[FileInfo]) -> None:
        live = self._is_live(record)
        canonical = self.index.canonical
        for reported in infos:
            info = canonical(reported)
            old = record.files.get(info.name)
            record.files[info.name] = info
            if not live or (old is not None and old.content == info.content):
                continue
            if old is not None:
                self.index.remove(record, old)
            self._hold(record, info)

    def catalogDone(self, record: SecondaryRecord) -> None:
        record.catalogComplete = True
        if self._is_live(record):
            for listener in list(self.on_catalog_done):
                listener(record)

    def suspect(self, record: SecondaryRecord, name: str) -> None:
        """Stop offering C{record}'s copy of C{name} until it is checked."""
        if name not in record.suspect:
            record.suspect.add(name)
            self._suspicion(record, name, 1)

    def cleared(self, record: SecondaryRecord, name: str) -> None:
        """C{record} checked its copy of C{name}; offer it again if it still has it."""
        if name in record.suspect:
            self._suspicion(record, name, -1)
            record.suspect.discard(name)

    def byName(self, name: str) -> SecondaryRecord | None:
        return self._by_name.get(name)

    def removeFiles(self, record: SecondaryRecord, names: list[str]) -> None:
        live = self._is_live(record)
        for name in names:
            info = record.files.pop(name, None)
            if info is not None and live:
                self.index.remove(record, info)

    def withdraw(self, name: str) -> dict[str, list[SecondaryRecord]]:
        """Take C{name} out of the catalog: each content it had, and its holders.

        Every live secondary's copy leaves the index now, and a remembered
        orphan is dropped; the holders are for the caller to tell.
        """
        contents: dict[str, list[SecondaryRecord]] = {}
        orphan = self._orphans.pop(name, None)
        if orphan is not None:
            contents[orphan.sha256] = []
        for record in list(self.secondaries.values()):
            info = record.files.get(name)
            if info is None:
                continue
            contents.setdefault(info.sha256, []).append(record)
            self.cleared(record, name)
            self.removeFiles(record, [name])
        return contents

    def entry(self, name: str) -> CatalogEntry | None:
        """The content served under C{name} and its live holders."""
        found = self.index.get(name)
        if found is None:
            orphan = self._orphans.get(name)
            return None if orphan is None else CatalogEntry(orphan, [])
        return CatalogEntry(found.info, found.holders())

    def names_after(self, name: str | None) -> Iterator[NameEntry]:
        """Listed names in order after C{name}: O(log n) to start, O(1) a step."""
        return self.index.after(name)

    def file_count(self) -> int:
        """How many names are listed (served by at least one trusted holder)."""
        return len(self.index)

    def catalog(self) -> list[CatalogEntry]:
        """Every listed name (a whole walk: for tests and the console only)."""
        return [CatalogEntry(e.info, e.holders()) for e in self.index.after(None)]

    def locate(self, name: str) -> CatalogEntry:
        """The entry for C{name} with at least one holder, or a typed error."""
        entry = self.entry(name)
        if entry is None:
            raise ProtocolError("not_found", f"no file named {name!r}")
        if not entry.holders:
            raise ProtocolError("no_source", f"no live secondary holds {name!r}")
        return entry

    def _is_live(self, record: SecondaryRecord) -> bool:
        # A replaced record's connection may still speak before it closes.
        return self.secondaries.get(record.id) is record

    def _hold(self, record: SecondaryRecord, info: FileInfo) -> None:
        self._orphans.pop(info.name, None)
        entry = self.index.add(record, info)
        if len(entry.contents) > 1:
            groups = {
                copies.info.content: list(copies.holders.values())
                for copies in entry.contents
            }
            self._reportConflict(info.name, groups, entry.info.content)

    def _forget(self, record: SecondaryRecord) -> None:
        """Stop offering C{record} now; take its files out of the index in slices.

        Names left unheld become orphans.
        """
        record.gone = True
        if self._by_name.get(record.name) is record:
            del self._by_name[record.name]
        self._cooperate(self._removals(record, list(record.files.values())))

    def _removals(
        self, record: SecondaryRecord, infos: list[FileInfo]
    ) -> Iterator[None]:
        orphans = self._orphans
        for done, info in enumerate(infos, 1):
            if self.index.remove(record, info):
                orphans[info.name] = info
            if done % FORGET_SLICE == 0:
                yield None
        while len(orphans) > ORPHANS_KEPT:
            del orphans[next(iter(orphans))]

    def _suspicion(self, record: SecondaryRecord, name: str, change: int) -> None:
        info = record.files.get(name)
        if info is not None and self._is_live(record):
            self.index.suspicion(record, info, change)

    def _reportConflict(
        self,
        name: str,
        groups: dict[tuple[int, str, str], list[SecondaryRecord]],
        served: tuple[int, str, str],
    ) -> None:
        key = (name, frozenset(groups))
        if key in self._reportedConflicts:
            return
        self._reportedConflicts.add(key)
        described = "; ".join(
            f"sha256 {content[1][:12]} on {', '.join(r.name for r in holders)}"
            for content, holders in groups.items()
        )
        self.log.warn(
            "replicas of {name} disagree ({described}); serving sha256 {served}",
            name=name,
            described=described,
            served=served[1][:12],
        )
