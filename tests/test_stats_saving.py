"""Statistics saves that never hold the reactor: sliced encoding, threaded writes.

Work is counted, never timed: the encoder's slices, the cooperator's turns
(one slice a turn, each run by advancing a L{Clock}) and the writes a fake
thread pool was handed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, Cooperator
from twisted.logger import LogLevel, capturedLogs
from twisted.python.filepath import FilePath

from redesdl.central.stats import fresh_central_stats
from redesdl.jsonfile import SLICE_ENTRIES, encode_json_in_slices, write_bytes_atomic
from redesdl.stats import StatsFile

FILES = 100_000


def tally(n: int) -> dict[str, int]:
    return {"completed": n, "failed": n, "bytes": n}


def central_document(files: int) -> dict[str, Any]:
    return {
        "schema": 1,
        "role": "redesdl-central",
        "files": {f"dir/{i:06}.bin": tally(i) for i in range(files)},
        "clients": {"alice": tally(3), "bob": tally(0)},
        "failures": [{"time": 1.5, "file": "a", "client": "bob", "reason": "x\ny"}],
        "secondaries": {
            "s1": {
                "registrations": 2,
                "last_registered": None,
                "served": {f"f{i}": {"chunks": i, "bytes": 9} for i in range(3000)},
            },
            "s2": {"registrations": 1, "last_registered": 7.25, "served": {}},
        },
        "client_tokens": {"alice": "ab\u00e9", "bob": "cd"},
    }


def dumped(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True)


class Turns:
    """A Cooperator doing one step a turn; each L{run} advances one turn."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.cooperator = Cooperator(
            terminationPredicateFactory=lambda: lambda: True,
            scheduler=lambda work: self.clock.callLater(1, work),
        )
        self.count = 0

    def run(self) -> None:
        while self.clock.getDelayedCalls():
            self.clock.advance(1)
            self.count += 1


class Threads:
    """Calls handed to a thread pool, run only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred]] = []
        self.calls = 0

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.pending.append((f, args, done))
        self.calls += 1
        return done

    def run(self) -> None:
        while self.pending:
            f, args, done = self.pending.pop(0)
            try:
                result = f(*args)
            except Exception:
                done.errback()
            else:
                done.callback(result)


def sliced(value: Any, between: Callable[[], None] = lambda: None) -> tuple[str, list]:
    """C{value} encoded a slice at a time, C{between} called after each slice."""
    parts: list[str] = []
    slices = []
    for entries in encode_json_in_slices(value, parts):
        slices.append(entries)
        between()
    return "".join(parts), slices


def test_a_100k_file_document_is_encoded_a_bounded_slice_at_a_time() -> None:
    document = central_document(FILES)
    parts: list[str] = []
    slices = []
    records_per_slice = []
    seen = 0
    for entries in encode_json_in_slices(document, parts):
        slices.append(entries)
        records_per_slice.append(sum(p.count('"completed"') for p in parts[seen:]))
        seen = len(parts)
    assert "".join(parts) == dumped(document)
    assert max(slices) <= SLICE_ENTRIES
    # A file's record is its entry and its three counts: 250 a slice at most.
    assert max(records_per_slice) <= SLICE_ENTRIES // 4
    assert len(slices) >= FILES * 4 // SLICE_ENTRIES


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_any_slice_size_gives_what_json_dumps_gives(limit: int) -> None:
    document = {
        "a": [[1, [2, {}]], {"b": [{"c": {"d": []}}]}],
        "big": list(range(20)),
        "empty": {},
        "pair": (1, "\u2603"),
        "f": 1.5,
        "none": None,
        "files": {f"k{i}": tally(i) for i in range(30, 0, -1)},
    }
    parts: list[str] = []
    slices = list(encode_json_in_slices(document, parts, limit))
    assert "".join(parts) == dumped(document)
    assert max(slices) <= limit
    for scalar in (1, "x", None, [], {}):
        parts = []
        assert list(encode_json_in_slices(scalar, parts, limit)) == [1]
        assert "".join(parts) == dumped(scalar)


def test_entries_added_changed_and_deleted_between_slices() -> None:
    document = central_document(5000)
    files = document["files"]
    served = document["secondaries"]["s1"]["served"]
    deleted = set()
    turn = 0

    def mutate() -> None:
        nonlocal turn
        turn += 1
        files[f"new/{turn}"] = tally(turn)
        files[f"dir/{turn * 7 % 5000:06}.bin"] = tally(10_000 + turn)
        for gone in (f"dir/{4999 - turn:06}.bin", f"dir/{turn * 13 % 5000:06}.bin"):
            deleted.add(gone)
            files.pop(gone, None)
        served.pop(f"f{turn}", None)
        document["secondaries"][f"late{turn}"] = {"served": {}}

    text, slices = sliced(document, mutate)
    saved = json.loads(text)
    assert len(slices) > 10
    for name, counts in saved["files"].items():
        assert counts["completed"] == counts["failed"] == counts["bytes"]
        assert name in files or name in deleted
    assert set(saved["files"]) >= set(files) - {f"new/{n}" for n in range(turn + 1)}
    assert not any(f"dir/{4999 - n:06}.bin" in saved["files"] for n in range(1, 4))


def test_a_mapping_emptied_before_its_first_entry_is_encoded() -> None:
    document = {"a": 1, "files": {f"k{i}": tally(i) for i in range(3000)}}
    text, _ = sliced(document, document["files"].clear)
    assert json.loads(text) == {"a": 1, "files": {}}


def stats_file(
    path: Path, clock: Clock, turns: Turns, threads: Threads, **fields: Any
) -> StatsFile:
    stats = StatsFile(
        FilePath(str(path)),
        "redesdl-central",
        fresh_central_stats,
        clock,
        interval=10,
        cooperator=turns.cooperator,
        in_thread=threads,
    )
    stats.data.update(fields)
    return stats


def test_a_save_is_cooperative_then_written_in_a_thread(tmp_path: Path) -> None:
    clock, turns, threads = Clock(), Turns(), Threads()
    document = central_document(FILES)
    stats = stats_file(tmp_path / "stats.json", clock, turns, threads)
    stats.data.update(files=document["files"], secondaries=document["secondaries"])
    stats.startService()
    clock.advance(10)
    assert not (tmp_path / "stats.json").exists() and threads.pending == []
    turns.run()
    assert turns.count >= FILES * 4 // SLICE_ENTRIES
    assert len(threads.pending) == 1 and not (tmp_path / "stats.json").exists()
    threads.run()
    assert (tmp_path / "stats.json").read_text() == dumped(stats.data)
    stats.stopService()


def test_one_save_at_a_time_and_changes_meanwhile_are_saved_next(
    tmp_path: Path,
) -> None:
    clock, turns, threads = Clock(), Turns(), Threads()
    stats = stats_file(tmp_path / "stats.json", clock, turns, threads)
    stats.data["files"] = {f"k{i}": tally(i) for i in range(3000)}
    stats.startService()
    clock.advance(10)
    stats.data["files"]["late"] = tally(1)
    stats.changed()
    clock.advance(10)  # the first save is still encoding: no second one
    turns.run()
    clock.advance(10)  # ...nor while it is being written
    turns.run()
    assert threads.calls == 1
    threads.run()
    clock.advance(10)
    turns.run()
    threads.run()
    assert threads.calls == 2
    assert json.loads((tmp_path / "stats.json").read_text())["files"]["late"]
    clock.advance(10)
    turns.run()
    assert threads.calls == 2  # nothing changed since
    stats.stopService()


def test_a_failed_write_is_logged_and_kept_to_save_again(tmp_path: Path) -> None:
    clock, turns, threads = Clock(), Turns(), Threads()
    folder = tmp_path / "missing"
    stats = stats_file(folder / "stats.json", clock, turns, threads)
    stats.startService()
    with capturedLogs() as events:
        clock.advance(10)
        turns.run()
        threads.run()
    errors = [e for e in events if e["log_level"] == LogLevel.error]
    assert len(errors) == 1 and "cannot save statistics" in errors[0]["log_format"]
    folder.mkdir()
    clock.advance(10)
    turns.run()
    threads.run()
    assert json.loads((folder / "stats.json").read_text())["role"] == "redesdl-central"
    stats.stopService()


def test_stopping_waits_for_the_save_in_flight_then_saves_the_last_changes(
    tmp_path: Path,
) -> None:
    clock, turns, threads = Clock(), Turns(), Threads()
    stats = stats_file(tmp_path / "stats.json", clock, turns, threads)
    stats.data["files"] = {f"k{i}": tally(i) for i in range(3000)}
    stats.startService()
    clock.advance(10)
    stats.data["files"]["last"] = tally(5)
    stopped = stats.stopService()
    assert not stopped.called
    turns.run()
    threads.run()
    assert stopped.called
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert saved["files"]["last"] == tally(5) and saved == stats.data
    assert threads.calls == 1  # the final save is written at once, not in a thread


def test_stopping_when_idle_saves_at_once(tmp_path: Path) -> None:
    clock, turns, threads = Clock(), Turns(), Threads()
    stats = stats_file(tmp_path / "stats.json", clock, turns, threads)
    stats.startService()
    stats.data["clients"]["bob"] = tally(1)
    assert stats.stopService().called
    assert json.loads((tmp_path / "stats.json").read_text()) == stats.data


@pytest.mark.parametrize("crash", ["write", "fsync", "replace"])
def test_a_crash_while_writing_leaves_the_old_document_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    path = FilePath(str(tmp_path / "stats.json"))
    write_bytes_atomic(path, b'{"old": 1}')

    def crashed(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    if crash == "write":
        monkeypatch.setattr(os, "fsync", lambda fd: os.ftruncate(fd, 3) or crashed())
    else:
        monkeypatch.setattr(os, crash, crashed)
    with pytest.raises(OSError):
        write_bytes_atomic(path, b'{"new": 2}')
    assert json.loads(path.getContent()) == {"old": 1}
    monkeypatch.undo()
    write_bytes_atomic(path, b'{"new": 2}')
    assert json.loads(path.getContent()) == {"new": 2}
    assert not path.sibling("stats.json.tmp").exists()


def test_while_a_save_is_in_flight_the_file_is_the_previous_document(
    tmp_path: Path,
) -> None:
    clock, turns, threads = Clock(), Turns(), Threads()
    stats = stats_file(tmp_path / "stats.json", clock, turns, threads)
    stats.save()
    before = (tmp_path / "stats.json").read_text()
    stats.startService()
    stats.data["files"] = {f"k{i}": tally(i) for i in range(3000)}
    stats.changed()
    clock.advance(10)
    for _ in range(3):
        turns.clock.advance(1)
        assert turns.clock.getDelayedCalls()  # still encoding
        assert (tmp_path / "stats.json").read_text() == before
    turns.run()
    assert (tmp_path / "stats.json").read_text() == before
    threads.run()
    assert json.loads((tmp_path / "stats.json").read_text()) == stats.data
    stats.stopService()


def test_on_a_plain_clock_the_default_save_is_whole_and_exact(tmp_path: Path) -> None:
    """No fakes injected: the Cooperator runs on the clock, writes run inline."""
    clock = Clock()
    stats = StatsFile(
        FilePath(str(tmp_path / "stats.json")),
        "redesdl-central",
        fresh_central_stats,
        clock,
        interval=10,
    )
    stats.data["files"] = central_document(20_000)["files"]
    stats.startService()
    stats.changed()
    clock.advance(10)
    assert (tmp_path / "stats.json").read_text() == dumped(stats.data)
    stats.stopService()
