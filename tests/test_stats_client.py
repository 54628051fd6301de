"""The client's statistics store: shared by concurrent processes, bounded, readable."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from redesdl.client import statsdb
from redesdl.client.identity import remember_name, remembered_name
from redesdl.client.stats import ClientStats
from redesdl.client.statsdb import ClientStatsStore

BIN = Path(sys.executable).parent
#: A timeline as long as a real download's (~9 KB of JSON).
TIMELINE = [
    {"t": i / 100, "event": "verified", "chunk": i, "source": "s1"} for i in range(150)
]

WRITER = """
import sys
from redesdl.client.statsdb import ClientStatsStore
path, me, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = ClientStatsStore(path)
timeline = [{"t": 0.5, "event": "verified", "chunk": i, "source": "s1"}
            for i in range(150)]
for n in range(count):
    store.add({"file": f"{me}.bin", "path": f"/tmp/{me}-{n}", "result": "ok",
               "bytes_fetched": 1000, "size": 1000, "seconds": 0.1,
               "timeline": timeline})
store.close()
"""


def record(file: str, result: str = "ok", **fields: Any) -> dict[str, Any]:
    return {
        "file": file,
        "path": f"/tmp/{file}",
        "result": result,
        "bytes_fetched": 10,
        "size": 10,
        "seconds": 0.5,
        "reason": "" if result == "ok" else "connection lost",
        "timeline": TIMELINE,
        **fields,
    }


def test_stores_opened_at_the_same_moment_all_open(tmp_path: Path) -> None:
    """Clients starting together race to switch a new database to WAL; none fails."""
    failures: list[BaseException] = []
    for attempt in range(40):
        path = str(tmp_path / f"stats-{attempt}.sqlite")
        together = threading.Barrier(6)

        def open_store(
            path: str = path, together: threading.Barrier = together
        ) -> None:
            together.wait()
            try:
                ClientStatsStore(path).close()
            except BaseException as e:  # collected for the assert below
                failures.append(e)

        threads = [threading.Thread(target=open_store) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_concurrent_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "client-stats.sqlite")
    writers, each = 8, 25
    started = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, f"w{n}", str(each)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    try:
        deadline = time.monotonic() + 120
        for process in started:
            _, err = process.communicate(timeout=max(1, deadline - time.monotonic()))
            assert process.returncode == 0, err
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    store = ClientStatsStore(path)
    assert store.totals() == {
        "completed": writers * each,
        "failed": 0,
        "bytes": writers * each * 1000,
    }
    assert store.files() == {
        f"w{n}.bin": {"completed": each, "failed": 0, "bytes": each * 1000}
        for n in range(writers)
    }
    paths = {r["path"] for r in store.downloads()}
    assert len(paths) == writers * each
    with_timelines = store.downloads(timelines=True)
    assert sum("timeline" in r for r in with_timelines) == statsdb.MAX_TIMELINES_KEPT


def test_records_stay_bounded_and_totals_count_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statsdb, "MAX_DOWNLOADS_KEPT", 5)
    monkeypatch.setattr(statsdb, "MAX_TIMELINES_KEPT", 2)
    monkeypatch.setattr(statsdb, "MAX_FILES_KEPT", 3)
    stats = ClientStats(str(tmp_path / "s.sqlite"))
    for n in range(12):
        stats.downloadEnded(record(f"f{n % 4}.bin", "ok" if n % 3 else "failed"))
    document = stats.store.document(timelines=True)
    assert document["totals"] == {"completed": 8, "failed": 4, "bytes": 120}
    assert [r["file"] for r in document["downloads"]] == [
        "f3.bin",
        "f0.bin",
        "f1.bin",
        "f2.bin",
        "f3.bin",
    ]
    assert ["timeline" in r for r in document["downloads"]] == [False] * 3 + [True] * 2
    assert sorted(document["files"]) == ["f1.bin", "f2.bin", "f3.bin"]
    stats.close()

    def size_after(downloads: int) -> int:
        more = ClientStats(str(tmp_path / "s.sqlite"))
        for n in range(downloads):
            more.downloadEnded(record(f"g{n}.bin"))
        more.close()  # the last to close folds the log into the database
        return (tmp_path / "s.sqlite").stat().st_size

    settled = size_after(100)
    assert size_after(400) <= settled, "the database grows with every download"


def test_summary_and_downloaded_files_show_what_a_person_reads(tmp_path: Path) -> None:
    stats = ClientStats(str(tmp_path / "s.sqlite"))
    stats.downloadEnded(record("clip.bin", path="/home/ana/a/clip.bin"))
    stats.downloadEnded(record("clip.bin", path="/home/ana/b/clip.bin"))
    stats.downloadEnded(record("song.mp3", "failed"))
    summary = stats.summary()
    assert summary[0].startswith("2 downloads completed, 1 failed, 30 bytes fetched")
    assert summary[1] == "  clip.bin -> /home/ana/a/clip.bin: 10 bytes in 0.50 s, ok"
    assert summary[2] == "  clip.bin -> /home/ana/b/clip.bin: 10 bytes in 0.50 s, ok"
    assert stats.files_downloaded() == [
        "clip.bin: 2 completed",
        "song.mp3: 0 completed, 1 failed",
    ]


def test_an_unusable_database_is_set_aside_with_one_warning(
    tmp_path: Path, warnings: list[str]
) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database, it is a file of text" * 100)
    stats = ClientStats(str(path))
    stats.downloadEnded(record("a.bin"))
    assert stats.store.totals()["completed"] == 1
    assert (tmp_path / "s.sqlite.corrupt").read_bytes().startswith(b"this is not")
    assert len(warnings) == 1
    assert "moved to" in warnings[0] and "starting fresh" in warnings[0]


def test_redesdl_stats_prints_the_json_document(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    stats = ClientStats(str(path))
    stats.downloadEnded(record("clip.bin"))
    stats.close()
    command = [str(BIN / "redesdl"), "--stats", str(path), "stats"]
    shown = subprocess.run(
        [*command, "--json", "--timelines"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["schema"] == 2 and document["role"] == "redesdl"
    assert document["totals"] == {"completed": 1, "failed": 0, "bytes": 10}
    assert document["files"]["clip.bin"]["completed"] == 1
    assert document["downloads"][0]["timeline"] == TIMELINE
    lines = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert lines.stdout.startswith("1 downloads completed, 0 failed, 10 bytes")
    assert f"kept in {path}" in lines.stdout


def test_the_chosen_name_is_remembered_and_a_bad_file_set_aside(
    tmp_path: Path, warnings: list[str]
) -> None:
    assert remembered_name(tmp_path) is None
    remember_name(tmp_path, "ana")
    assert remembered_name(tmp_path) == "ana"
    (tmp_path / "client.json").write_text('{"name": 7}')
    assert remembered_name(tmp_path) is None
    assert (tmp_path / "client.json.corrupt").exists()
    assert len(warnings) == 1 and "field name: expected" in warnings[0]
    (tmp_path / "client.json").write_text('{"name": "ana\\u001b[2J"}')
    assert remembered_name(tmp_path) is None
    assert len(warnings) == 2 and "printable characters" in warnings[1]


def test_damaged_records_are_left_out_and_counted(tmp_path: Path) -> None:
    """A record that is not JSON, or of the wrong types, made every later
    ``redesdl stats`` fail with 'unexpected error'."""
    path = tmp_path / "s.sqlite"
    stats = ClientStats(str(path))
    for name in ("a.bin", "b.bin", "c.bin", "d.bin"):
        stats.downloadEnded(record(name))
    stats.close()
    database = sqlite3.connect(path)
    for damaged, file in (
        ("not json", "a.bin"),
        ('["a", "list"]', "b.bin"),
        ('{"file": "c.bin", "result": "ok", "seconds": "soon"}', "c.bin"),
    ):
        database.execute(
            "UPDATE downloads SET record = ? WHERE record LIKE ?",
            (damaged, f'%"{file}"%'),
        )
    database.commit()
    database.close()
    stats = ClientStats(str(path))
    summary = stats.summary()
    assert summary[1:] == [
        "  d.bin -> /tmp/d.bin: 10 bytes in 0.50 s, ok",
        "  (3 damaged download records left out)",
    ]
    assert [d["file"] for d in stats.store.document()["downloads"]] == ["d.bin"]
    stats.close()
