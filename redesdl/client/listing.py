"""How the client shows the catalog and a finished download to a person.

A catalog is shown page by page as the central sends it (L{TextListing},
L{JsonListing}), so a listing of millions of names starts printing at once
and holds one page, not the whole catalog.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from redesdl.client.progress import human_size
from redesdl.printable import printable
from redesdl.protocol.wire import CatalogEntry
from redesdl.transfer.result import DownloadResult

#: Widest the name column grows; a longer name pushes its own line right.
NAME_COLUMN_CAP = 60


class TextListing:
    """Aligned lines for a person, one page at a time.

    The name column is as wide as the longest name of the first page, at
    most L{NAME_COLUMN_CAP}: lines already printed are never realigned, so a
    longer name later pushes the rest of its own line right.
    """

    def __init__(self, header: bool = False) -> None:
        self._width: int | None = None
        self.shown = 0
        #: Whether the first page starts with a row naming the columns.
        self._header = header

    def lines(self, entries: Iterable[CatalogEntry]) -> list[str]:
        """The lines showing C{entries}, the next names of the catalog."""
        entries = list(entries)
        # Names are free of control characters, but not of bidi overrides or
        # other format characters, which would reorder the line on screen.
        names = [printable(entry.info.name, limit=None) for entry in entries]
        if self._width is None and entries:
            self._width = min(max(map(len, names)), NAME_COLUMN_CAP)
        self.shown += len(entries)
        return [
            f"{name:<{self._width}}  {human_size(entry.info.size):>10}  "
            f"{f'{entry.sources} source(s)':<11}  {entry.info.sha256[:16]}"
            for name, entry in zip(names, entries, strict=True)
        ]

    def page(self, entries: Iterable[CatalogEntry]) -> str:
        first = self.shown == 0
        lines = self.lines(entries)
        if first and lines and self._header:
            lines.insert(
                0, f"{'NAME':<{self._width}}  {'SIZE':>10}  {'SOURCES':<11}  SHA256"
            )
        return "".join(f"{line}\n" for line in lines)

    def end(self) -> str:
        return "" if self.shown else "no files yet\n"


class JsonListing:
    """One JSON array, written as it streams: C{[}, entries joined by C{, }, C{]}.

    The text is the same as C{json.dumps} of the whole list would give.
    """

    def __init__(self) -> None:
        self._started = False

    def page(self, entries: Iterable[CatalogEntry]) -> str:
        text = ", ".join(json.dumps(entry.to_wire()) for entry in entries)
        if not text:
            return ""
        opening = ", " if self._started else "["
        self._started = True
        return opening + text

    def end(self) -> str:
        return "]\n" if self._started else "[]\n"


def describe_result(result: DownloadResult, fetch_seconds: float | None = None) -> str:
    """The summary of a finished download.

    The rate counts only the bytes fetched in this run, over the time spent
    fetching them (C{fetch_seconds}, all of C{result.seconds} if not given);
    chunks reused from an earlier attempt are said apart, and so is the time
    spent waiting in the central's queue, which the download's own time leaves
    out.
    """
    used = ", ".join(
        f"{printable(name)} {human_size(n)}" for name, n in result.sources.items()
    )
    seconds = result.seconds if fetch_seconds is None else fetch_seconds
    rate = result.bytes_fetched / seconds if seconds else 0
    reused = (
        f"; {human_size(result.bytes_reused)} reused from an earlier attempt"
        if result.bytes_reused
        else ""
    )
    where = (
        "wrote it to stdout"
        if result.path == "-"
        else f"saved {printable(result.path, limit=None)}"
    )
    queued = result.queued_seconds or 0.0
    waited = f" after {queued:.1f} s waiting for a slot" if queued >= 0.05 else ""
    return (
        f"{where} ({human_size(result.size)}, sha256 {result.sha256}) "
        f"in {result.seconds:.2f} s{waited}, {human_size(rate)}/s from "
        f"{used or 'nowhere (empty file)'}{reused}"
    )
