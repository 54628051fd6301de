"""The data index: recursive names, change detection, a cache that spares rehashing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.python.filepath import FilePath

from redesdl import manifest as manifest_module
from redesdl.manifest import MIN_CHUNK_SIZE, build_manifest
from redesdl.protocol.errors import ProtocolError
from redesdl.secondary.index import DataIndex


class CountingThread:
    """Run 'threaded' work inline, counting the files hashed."""

    def __init__(self) -> None:
        self.hashed: list[str] = []

    def __call__(self, function: Any, *args: Any) -> Any:
        if function.__name__ == "build_manifest":
            self.hashed.append(args[1])
        return succeed(function(*args))


def make_index(data: Path, state: Path, runner: CountingThread) -> DataIndex:
    return DataIndex(FilePath(str(data)), FilePath(str(state / "index.json")), runner)


def scan(index: DataIndex) -> Any:
    result: list[Any] = []
    index.scan().addCallback(result.append)
    assert result, "the scan should finish at once with inline threads"
    return result[0]


def test_scan_names_files_recursively_and_skips_hidden_and_links(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    (data / "sub" / "deeper").mkdir(parents=True)
    (data / "a.txt").write_bytes(b"a")
    (data / "sub" / "deeper" / "b.bin").write_bytes(b"bb")
    (data / ".hidden").write_bytes(b"h")
    (data / ".redesdl-incoming").mkdir()
    (data / ".redesdl-incoming" / "partial").write_bytes(b"p")
    (data / "link").symlink_to("/etc/passwd")
    index = make_index(data, tmp_path, CountingThread())
    changes = scan(index)
    assert sorted(m.name for m in changes.added) == ["a.txt", "sub/deeper/b.bin"]
    assert sorted(index.entries) == ["a.txt", "sub/deeper/b.bin"]


def test_changes_are_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep").write_bytes(b"k")
    (data / "change").write_bytes(b"old")
    (data / "remove").write_bytes(b"r")
    runner = CountingThread()
    index = make_index(data, tmp_path, runner)
    scan(index)
    (data / "change").write_bytes(b"new content")
    (data / "remove").unlink()
    (data / "add").write_bytes(b"a")
    runner.hashed.clear()
    changes = scan(index)
    assert sorted(m.name for m in changes.added) == ["add", "change"]
    assert changes.removed == ["remove"]
    assert sorted(runner.hashed) == ["add", "change"]
    assert not scan(index)


def test_restart_with_unchanged_files_hashes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "one").write_bytes(b"1" * 1000)
    (data / "two").write_bytes(b"2" * 1000)
    scan(make_index(data, tmp_path, CountingThread()))
    runner = CountingThread()
    restarted = make_index(data, tmp_path, runner)
    changes = scan(restarted)
    assert runner.hashed == []
    assert sorted(m.name for m in changes.added) == ["one", "two"]


def test_a_file_rewritten_with_the_same_size_is_rehashed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    target = data / "f"
    target.write_bytes(b"aaaa")
    scan(make_index(data, tmp_path, CountingThread()))
    target.write_bytes(b"bbbb")
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    runner = CountingThread()
    index = make_index(data, tmp_path, runner)
    scan(index)
    assert runner.hashed == ["f"]


def test_unreadable_cache_is_set_aside(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_bytes(b"x")
    (tmp_path / "index.json").write_text("{not json")
    index = make_index(data, tmp_path, CountingThread())
    assert [m.name for m in scan(index).added] == ["f"]
    assert (tmp_path / "index.json.corrupt").exists()


def adopt(index: DataIndex, manifest: Any, path: Path) -> bool:
    result: list[bool] = []
    Deferred.fromCoroutine(index.adopt(manifest, str(path))).addCallback(result.append)
    return result[0]


def test_an_adopted_copy_is_served_only_once_its_own_hash_matches(
    tmp_path: Path,
) -> None:
    data, state = tmp_path / "data", tmp_path / "state"
    data.mkdir()
    state.mkdir()
    good = data / "good.bin"
    good.write_bytes(b"g" * 1000)
    manifest = build_manifest(str(good), "good.bin")
    changes: list[Any] = []
    index = make_index(data, state, CountingThread())
    index.listeners.append(changes.append)
    assert adopt(index, manifest, good)
    assert index.lookup("good.bin", manifest.sha256).path == str(good)
    assert [m.name for m in changes[0].added] == ["good.bin"]

    lying = data / "bad.bin"
    lying.write_bytes(b"b" * 1000)
    claimed = build_manifest(str(good), "bad.bin")
    assert not adopt(index, claimed, lying)
    with pytest.raises(ProtocolError):
        index.lookup("bad.bin", claimed.sha256)
    assert not lying.exists(), "the copy that did not match is set aside"
    assert len(changes) == 1


def test_adopting_a_copy_hashes_each_byte_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, state = tmp_path / "data", tmp_path / "state"
    data.mkdir()
    state.mkdir()
    copy = data / "copy.bin"
    copy.write_bytes(os.urandom(3 * MIN_CHUNK_SIZE + 5))
    manifest = build_manifest(str(copy), "copy.bin")
    hashed = []
    real = hashlib.sha256

    class CountingSha256:
        def __init__(self) -> None:
            self._digest = real()

        def update(self, data: bytes) -> None:
            hashed.append(len(data))
            self._digest.update(data)

        def hexdigest(self) -> str:
            return self._digest.hexdigest()

    monkeypatch.setattr(manifest_module.hashlib, "sha256", CountingSha256)
    index = make_index(data, state, CountingThread())
    assert adopt(index, manifest, copy)
    assert sum(hashed) == copy.stat().st_size
    assert index.lookup("copy.bin", manifest.sha256).path == str(copy)


def test_files_left_out_for_their_names_are_said_once(
    tmp_path: Path, warnings: list[str]
) -> None:
    """Names with control characters, or over 1024 characters, were left out
    with no line for the operator."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.bin").write_bytes(b"a")
    (data / "tab\there.bin").write_bytes(b"b")
    (data / ".DS_Store").write_bytes(b"c")
    index = make_index(data, tmp_path, CountingThread())
    scan(index)
    scan(index)
    assert sorted(index.entries) == ["ok.bin"]
    (line,) = warnings
    assert line.startswith("not serving tab") and "control characters" in line
