"""Statistics files: accumulated across restarts, saved atomically on a schedule."""

from __future__ import annotations

import json
import os
from pathlib import Path

from twisted.internet.task import Clock
from twisted.python.filepath import FilePath

from redesdl.jsonfile import counter, number, read_json, record, validator
from redesdl.secondary.stats import MAX_CLIENTS_PER_FILE
from redesdl.stats import SCHEMA_VERSION, StatsFile

from .secondaryparts import fresh_stats


def fresh() -> dict:
    return {"count": 0}


def open_stats(path: Path, clock: Clock) -> StatsFile:
    return StatsFile(FilePath(str(path)), "test", fresh, clock, interval=10)


def test_saved_within_the_interval_while_something_changed(tmp_path: Path) -> None:
    clock = Clock()
    stats = open_stats(tmp_path / "s.json", clock)
    stats.startService()
    stats.data["count"] = 3
    stats.changed()
    clock.advance(10)
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["count"] == 3 and saved["schema"] == SCHEMA_VERSION
    assert saved["uptime_seconds"] == 10
    assert not (tmp_path / "s.json.tmp").exists()
    stats.stopService()


def test_restarts_accumulate(tmp_path: Path) -> None:
    clock = Clock()
    first = open_stats(tmp_path / "s.json", clock)
    first.data["count"] = 2
    clock.advance(5)
    first.stopService()
    second = open_stats(tmp_path / "s.json", clock)
    assert second.data["count"] == 2
    assert second.data["starts"] == 2
    clock.advance(1)
    second.save()
    assert json.loads((tmp_path / "s.json").read_text())["uptime_seconds"] == 6


def test_an_unreadable_file_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text("{half a docu")
    stats = open_stats(tmp_path / "s.json", Clock())
    assert stats.data["count"] == 0
    assert (tmp_path / "s.json.corrupt").read_text() == "{half a docu"


def test_missing_fields_are_filled_in(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"schema": SCHEMA_VERSION}))
    assert open_stats(tmp_path / "s.json", Clock()).data["count"] == 0


def test_a_served_file_keeps_its_last_100_clients_and_counts_them_all(
    tmp_path: Path,
) -> None:
    """Any hello brings a new client name: 20,000 of them grew a secondary's
    stats.json to 6 MB, rewritten whole at every save."""
    stats = fresh_stats(tmp_path / "stats.json")
    for n in range(20_000):
        stats.chunkServed("a.bin", f"client{n}", 10)
    stats.chunkServed("a.bin", "client19900", 10)
    served = stats.data["served"]["a.bin"]
    assert (served["chunks"], served["bytes"]) == (20_001, 200_010)
    assert len(served["clients"]) == MAX_CLIENTS_PER_FILE == 100
    assert list(served["clients"])[-1] == "client19900"
    assert served["clients"]["client19900"] == {"chunks": 2, "bytes": 20}
    assert "client19899" not in served["clients"]


def test_state_files_that_would_hang_or_exhaust_a_daemon_are_set_aside(
    tmp_path: Path,
) -> None:
    """A FIFO blocked the daemon before it listened; a symlink to /dev/zero
    read until memory ran out; a 309-digit number was an OverflowError at
    start; a field nested 600 deep failed every periodic save."""
    check = validator(record({"saved": number, "starts": counter}))
    cases = {
        "fifo": None,
        "zero": None,
        "huge": b'{"saved": 1' + b"0" * 309 + b', "starts": 1}',
        "big": b'{"saved": 1, "starts": 1' + b"0" * 4000 + b"}",
        "deep": b'{"saved": 1, "starts": 1, "x": ' + b"[" * 600 + b"]" * 600 + b"}",
    }
    for name, body in cases.items():
        path = tmp_path / f"{name}.json"
        if name == "fifo":
            os.mkfifo(path)
        elif name == "zero":
            os.symlink("/dev/zero", path)
        else:
            path.write_bytes(body)
        assert read_json(FilePath(str(path)), "fresh", check) == "fresh", name
        assert (tmp_path / f"{name}.json.corrupt").exists() or os.path.islink(
            tmp_path / f"{name}.json.corrupt"
        ), name
    fine = tmp_path / "fine.json"
    fine.write_bytes(b'{"saved": 1.5, "starts": 9223372036854775807, "x": [[[]]]}')
    assert read_json(FilePath(str(fine)), None, check)["starts"] == 2**63 - 1


def test_a_file_that_cannot_be_set_aside_is_not_said_to_be(
    tmp_path: Path, warnings: list[str]
) -> None:
    """It said 'moved to ....corrupt' while the move had failed."""
    path = tmp_path / "stats.json"
    path.write_text("not json")
    (tmp_path / "stats.json.corrupt").mkdir()
    (tmp_path / "stats.json.corrupt" / "inside").write_text("x")
    assert read_json(FilePath(str(path)), "fresh") == "fresh"
    (line,) = warnings
    assert "cannot be moved to" in line and "moved to" not in line.split("(")[0]
    assert "it will be replaced at the next save" in line
