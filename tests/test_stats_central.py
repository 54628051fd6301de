"""The central's VIDEOS_CLIENTE: which files each client downloaded, bounded."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath

from redesdl.central import stats as central_stats
from redesdl.central.console import CentralCommands
from redesdl.central.stats import CentralStats, fresh_central_stats
from redesdl.stats import StatsFile


def test_videos_cliente_shows_each_clients_files_and_forgets_the_oldest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(central_stats, "MAX_FILES_PER_CLIENT", 2)
    file = StatsFile(
        FilePath(str(tmp_path / "stats.json")), "t", fresh_central_stats, Clock()
    )
    stats = CentralStats(file)
    for name in ("a.mp4", "b.mp4", "a.mp4", "c.mp4", "c.mp4"):
        stats.downloadEnded("ana", "tok", name, True, 10, 10, "")
    stats.downloadEnded("bob", "tok2", "a.mp4", False, 10, 3, "lost")
    console = CentralCommands(SimpleNamespace(stats=stats))  # type: ignore[arg-type]
    assert console.cmd_videos_cliente([]) == [
        "ana: 5 completed",
        "  a.mp4: 2",
        "  c.mp4: 2",
        "  (1 more, of files no longer listed)",
        "bob: 0 completed",
    ]
