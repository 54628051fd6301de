"""The central's soft state: live secondaries and the catalog merged from theirs.

Nothing here is persisted: after a central restart the secondaries register
again and report their files, which rebuilds it all. Replicas of a name count
as one source set only if their ``(size, sha256, root)`` agree; when they
disagree, the content most live secondaries hold is served and the conflict
is logged, so bytes of different contents are never mixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

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


class Registry:
    """Who is registered, what each holds, and which content each name serves."""

    log = Logger()

    def __init__(self) -> None:
        self.secondaries: dict[str, SecondaryRecord] = {}
        #: Ids of every secondary ever registered, to log a return as such.
        self._seen: set[str] = set()
        self._known: dict[str, FileInfo] = {}
        self._reportedConflicts: set[tuple[str, frozenset[tuple[int, str, str]]]] = (
            set()
        )
        self.listeners: list[Callable[[], None]] = []

    def register(self, record: SecondaryRecord) -> SecondaryRecord | None:
        """Add C{record}; return the older record of the same id it replaces."""
        for other in self.secondaries.values():
            if other.name == record.name and other.id != record.id:
                raise ProtocolError(
                    "name_taken",
                    f"a secondary named {record.name!r} is already registered",
                )
        previous = self.secondaries.get(record.id)
        self.secondaries[record.id] = record
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
        self._changed()
        return previous

    def unregister(self, record: SecondaryRecord) -> None:
        """Forget C{record} unless a newer registration replaced it already."""
        if self.secondaries.get(record.id) is record:
            del self.secondaries[record.id]
            self.log.info("secondary {name} is gone", name=record.name)
            self._changed()

    def addFiles(self, record: SecondaryRecord, infos: list[FileInfo]) -> None:
        for info in infos:
            record.files[info.name] = info
            self._known[info.name] = info
        self._changed()

    def catalogDone(self, record: SecondaryRecord) -> None:
        record.catalogComplete = True
        self._changed()

    def suspect(self, record: SecondaryRecord, name: str) -> None:
        """Stop offering C{record}'s copy of C{name} until it is checked."""
        record.suspect.add(name)
        self._changed()

    def cleared(self, record: SecondaryRecord, name: str) -> None:
        """C{record} checked its copy of C{name}; offer it again if it still has it."""
        record.suspect.discard(name)
        self._changed()

    def byName(self, name: str) -> SecondaryRecord | None:
        for record in self.secondaries.values():
            if record.name == name:
                return record
        return None

    def removeFiles(self, record: SecondaryRecord, names: list[str]) -> None:
        for name in names:
            record.files.pop(name, None)
        self._changed()

    def entry(self, name: str) -> CatalogEntry | None:
        """The content served under C{name} and its live holders."""
        groups: dict[tuple[int, str, str], list[SecondaryRecord]] = {}
        for record in self.secondaries.values():
            info = record.files.get(name)
            if info is not None:
                groups.setdefault(info.content, []).append(record)
        if not groups:
            known = self._known.get(name)
            return None if known is None else CatalogEntry(known, [])
        content, holders = max(
            groups.items(), key=lambda item: (len(item[1]), item[0][1])
        )
        trusted = [record for record in holders if name not in record.suspect]
        if len(groups) > 1:
            self._reportConflict(name, groups, content)
        return CatalogEntry(holders[0].files[name], trusted)

    def catalog(self) -> list[CatalogEntry]:
        names = set(self._known)
        entries = (self.entry(name) for name in sorted(names))
        return [entry for entry in entries if entry is not None]

    def locate(self, name: str) -> CatalogEntry:
        """The entry for C{name} with at least one holder, or a typed error."""
        entry = self.entry(name)
        if entry is None:
            raise ProtocolError("not_found", f"no file named {name!r}")
        if not entry.holders:
            raise ProtocolError("no_source", f"no live secondary holds {name!r}")
        return entry

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

    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener()
