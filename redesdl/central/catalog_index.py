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

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from sortedcontainers import SortedDict

from redesdl.manifest import FileInfo

if TYPE_CHECKING:
    from redesdl.central.registry import SecondaryRecord

Content = tuple[int, str, str]

#: What ``"sources": N`` adds to an entry's JSON after the file's own fields.
_SOURCES_FIELD = len(', "sources": ')


class Copies:
    """The live holders of one content of one name."""

    __slots__ = ("_wire_size", "holders", "info", "suspects")

    def __init__(self, info: FileInfo) -> None:
        self.info = info
        self.holders: dict[str, SecondaryRecord] = {}
        #: How many of the holders have their copy under suspicion.
        self.suspects = 0
        self._wire_size = -1

    def wire_size(self) -> int:
        """Bytes of the file's fields in a ``catalog`` entry, computed once."""
        if self._wire_size < 0:
            self._wire_size = len(json.dumps(self.info.to_wire()))
        return self._wire_size


class NameEntry:
    """One name: each content reported under it, and the one it serves."""

    __slots__ = ("contents", "listed", "name", "served", "sources")

    def __init__(self, name: str) -> None:
        self.name = name
        self.contents: dict[Content, Copies] = {}
        self.served: Copies | None = None
        #: Holders of the served content not under suspicion.
        self.sources = 0
        self.listed = False

    @property
    def info(self) -> FileInfo:
        assert self.served is not None
        return self.served.info

    def holders(self) -> list[SecondaryRecord]:
        """The holders of the served content a client may be sent to."""
        if self.served is None:
            return []
        name = self.name
        return [h for h in self.served.holders.values() if name not in h.suspect]

    def wire_size(self) -> int:
        """Bytes of this entry in a ``catalog`` page (its JSON object)."""
        assert self.served is not None
        return self.served.wire_size() + _SOURCES_FIELD + len(str(self.sources))


class CatalogIndex:
    """Every held name by name, and the listed ones in sorted order.

    C{touched} counts the entries read or updated, so tests can bound the
    work of a page or an update without timing it.
    """

    def __init__(self) -> None:
        self._names: dict[str, NameEntry] = {}
        self._listed: SortedDict = SortedDict()
        self.touched = 0
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

    def after(self, name: str | None) -> Iterator[NameEntry]:
        """Listed entries in name order, from the first one after C{name}."""
        listed = self._listed
        for key in listed.irange(minimum=name, inclusive=(False, True)):
            self.touched += 1
            yield listed[key]

    def before(self, name: str) -> str | None:
        """The last listed name before C{name}, if any: O(log n)."""
        at = self._listed.bisect_left(name)
        return None if at == 0 else self._listed.keys()[at - 1]

    def add(self, record: SecondaryRecord, info: FileInfo) -> NameEntry:
        """C{record} now holds C{info} (it held no other content of that name)."""
        entry = self._names.get(info.name)
        if entry is None:
            entry = self._names[info.name] = NameEntry(info.name)
        self.touched += 1
        copies = entry.contents.get(info.content)
        if copies is None:
            copies = entry.contents[info.content] = Copies(info)
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
        copies = None if entry is None else entry.contents.get(info.content)
        if (
            entry is None
            or copies is None
            or copies.holders.pop(record.id, None) is None
        ):
            return False
        self.touched += 1
        if info.name in record.suspect:
            copies.suspects -= 1
        if entry.listed:
            record.listed_held -= 1
        if not copies.holders:
            del entry.contents[info.content]
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
        copies = None if entry is None else entry.contents.get(info.content)
        if entry is None or copies is None or record.id not in copies.holders:
            return
        self.touched += 1
        copies.suspects += change
        self._settle(entry)

    def _settle(self, entry: NameEntry) -> None:
        """Choose the served content again and list or unlist the name."""
        served = max(
            entry.contents.values(),
            key=lambda c: (len(c.holders), c.info.sha256),
            default=None,
        )
        entry.served = served
        entry.sources = 0 if served is None else len(served.holders) - served.suspects
        listed = entry.sources > 0
        if listed == entry.listed:
            return
        entry.listed = listed
        change = 1 if listed else -1
        for copies in entry.contents.values():
            for holder in copies.holders.values():
                holder.listed_held += change
        if not listed:
            del self._listed[entry.name]
            return
        self._listed[entry.name] = entry
        for listener in self.on_listed:
            listener(entry.name)
