"""A secondary's index and statistics for tests that build a chunk server by hand."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath

from redesdl.secondary.index import DataIndex
from redesdl.secondary.stats import SecondaryStats, fresh_secondary_stats
from redesdl.stats import StatsFile


def scanned_index(data: Path, cache: Path) -> DataIndex:
    """The index of C{data}, hashed inline (no thread) and already scanned."""
    index = DataIndex(
        FilePath(str(data)), FilePath(str(cache)), lambda f, *a: succeed(f(*a))
    )
    index.scan()
    return index


def fresh_stats(path: Path) -> SecondaryStats:
    """Empty statistics kept at C{path}, saved on a clock nobody advances."""
    return SecondaryStats(
        StatsFile(FilePath(str(path)), "test", fresh_secondary_stats, Clock())
    )
