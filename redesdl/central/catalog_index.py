"""The catalog index: who holds each name, and the sorted list clients page.

The registry updates it in place as secondaries report (a file added or
removed, a secondary gone, a copy suspect or cleared), each update touching
the one name it concerns. Nothing rebuilds the catalog: a ``list`` page walks
the sorted names from its ``after`` cursor, O(log n + page) whatever the
catalog's size, and counts kept here answer metrics and the planner's backlog
without a walk. A name is listed while the content it serves has a holder
not under suspicion; a name nobody holds is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from sortedcontainers import SortedList

from redesdl.manifest import FileInfo
from redesdl.protocol.wire import CatalogEntry

if TYPE_CHECKING:
    from redesdl.central.registry import SecondaryRecord


class Copies:
    """The live holders of one content of one name."""

    __slots__ = ("holders", "info", "suspects")

    def __init__(self, info: FileInfo) -> None:
        self.info = info
        self.holders: dict[str, SecondaryRecord] = {}
        #: How many of the holders have their copy under suspicion.
        self.suspects = 0


class NameEntry:
    """One name: each content reported under it, and the one it serves."""

    __slots__ = ("_wire", "contents", "listed", "name", "served", "sources")

    def __init__(self, name: str) -> None:
        self.name = name
        #: One per content reported under the name: nearly always one, so a
        #: list (a third of a dictionary's size) searched by equality.
        self.contents: list[Copies] = []
        self.served: Copies | None = None
        #: Holders of the served content not under suspicion.
        self.sources = 0
        self.listed = False
        self._wire: bytes | None = None

    def copies_of(self, info: FileInfo) -> Copies | None:
        """The holders of C{info}'s content under this name, if any."""
        for copies in self.contents:
            if copies.info == info:
                return copies
        return None

    @property
    def info(self) -> FileInfo:
        assert self.served is not None
        return self.served.info

    def holders(self) -> list[SecondaryRecord]:
        """The holders of the served content a client may be sent to."""
        if self.served is None:
            return []
        name = self.name
        return [
            h
            for h in self.served.holders.values()
            if not h.gone and name not in h.suspect
        ]

    def wire(self) -> CatalogEntry:
        """This name in a ``catalog`` page, encoded once per change."""
        if self._wire is None:
            self._wire = CatalogEntry(self.info, self.sources).json()
        return CatalogEntry(self.info, self.sources, self._wire)


class CatalogIndex:
    """Every held name by name, and the listed ones in sorted order.

    C{touched} counts the entries read or updated, so tests can bound the
    work of a page or an update without timing it.
    """

    def __init__(self) -> None:
        self._names: dict[str, NameEntry] = {}
        #: The listed names, sorted; their entries are in C{_names}.
        self._listed = SortedList()
        self.touched = 0
        #: Total size of the listed names (the content each serves).
        self.listed_bytes = 0
        #: Called with a name that was not listed and now is.
        self.on_listed: list[Callable[[str], None]] = []
        #: Called with a secondary and a name it no longer holds.
        self.on_released: list[Callable[[SecondaryRecord, str], None]] = []

    def __len__(self) -> int:
        """How many names are listed."""
        return len(self._listed)

    def get(self, name: str) -> NameEntry | None:
        """The entry of C{name} if anyone holds it, listed or not."""
        return self._names.get(name)

    def canonical(self, info: FileInfo) -> FileInfo:
        """The one L{FileInfo} kept for C{info}'s name and content, if any.

        Every holder of a content shares it (and its strings), so a holder
        costs the index and its own catalog a dictionary slot each.
        """
        entry = self._names.get(info.name)
        copies = None if entry is None else entry.copies_of(info)
        return info if copies is None else copies.info

    def after(self, name: str | None) -> Iterator[NameEntry]:
        """Listed entries in name order, from the first one after C{name}."""
        names = self._names
        for key in self._listed.irange(minimum=name, inclusive=(False, True)):
            self.touched += 1
            yield names[key]

    def before(self, name: str) -> str | None:
        """The last listed name before C{name}, if any: O(log n)."""
        at = self._listed.bisect_left(name)
        return None if at == 0 else self._listed[at - 1]

    def add(self, record: SecondaryRecord, info: FileInfo) -> NameEntry:
        """C{record} now holds C{info} (it held no other content of that name).

        A gone record of the same secondary still listed as holding it (its
        files are being taken out a slice at a time) is taken out first.
        """
        entry = self._names.get(info.name)
        if entry is not None:
            copies = entry.copies_of(info)
            stale = None if copies is None else copies.holders.get(record.id)
            if stale is not None and stale is not record:
                self.remove(stale, info)
                entry = self._names.get(info.name)
        if entry is None:
            entry = self._names[info.name] = NameEntry(info.name)
        self.touched += 1
        copies = entry.copies_of(info)
        if copies is None:
            copies = Copies(info)
            entry.contents.append(copies)
        if entry.listed:
            record.listed_held += 1
        copies.holders[record.id] = record
        if info.name in record.suspect:
            copies.suspects += 1
        self._settle(entry)
        return entry

    def remove(self, record: SecondaryRecord, info: FileInfo) -> bool:
        """C{record} no longer holds C{info}; True if nobody holds the name now."""
        entry = self._names.get(info.name)
        copies = None if entry is None else entry.copies_of(info)
        if copies is None or copies.holders.get(record.id) is not record:
            return False
        assert entry is not None
        del copies.holders[record.id]
        self.touched += 1
        if info.name in record.suspect:
            copies.suspects -= 1
        if entry.listed:
            record.listed_held -= 1
        if not copies.holders:
            entry.contents.remove(copies)
        self._settle(entry)
        for released in self.on_released:
            released(record, info.name)
        if entry.contents:
            return False
        del self._names[info.name]
        return True

    def suspicion(self, record: SecondaryRecord, info: FileInfo, change: int) -> None:
        """C{record}'s copy of C{info} came under (+1) or out of (-1) suspicion."""
        entry = self._names.get(info.name)
        copies = None if entry is None else entry.copies_of(info)
        if copies is None or copies.holders.get(record.id) is not record:
            return
        self.touched += 1
        copies.suspects += change
        self._settle(entry)

    def _settle(self, entry: NameEntry) -> None:
        """Choose the served content again and list or unlist the name."""
        was = entry.served.info.size if entry.listed and entry.served else 0
        served = max(
            entry.contents,
            key=lambda c: (len(c.holders), c.info.sha256),
            default=None,
        )
        sources = 0 if served is None else len(served.holders) - served.suspects
        if served is not entry.served or sources != entry.sources:
            entry.served = served
            entry.sources = sources
            entry._wire = None
        listed = entry.sources > 0
        self.listed_bytes += (entry.info.size if listed else 0) - was
        if listed == entry.listed:
            return
        entry.listed = listed
        change = 1 if listed else -1
        for copies in entry.contents:
            for holder in copies.holders.values():
                holder.listed_held += change
        if not listed:
            self._listed.remove(entry.name)
            return
        self._listed.add(entry.name)
        for listener in self.on_listed:
            listener(entry.name)
