"""A source replaying a chunk header over a verified chunk, over real TCP.

Issue 10's first defect: the rogue answers two pipelined ``get``s, then sends
a second ``chunk`` header for an id already answered, followed by garbage.
That garbage used to land on a verified chunk, and ``get`` exited 0 with a
corrupt file that replication adopted and served on.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.python.filepath import FilePath

from redesdl.manifest import MIN_CHUNK_SIZE, Manifest, build_manifest
from redesdl.secondary.index import DataIndex
from redesdl.secondary.replication import Replicator
from redesdl.transfer.download import Download
from redesdl.transfer.errors import DownloadError

from .inprocess import eventually, sha256_file
from .rogue import FakeSecondary, FullSecondary

SIZE = 4 * MIN_CHUNK_SIZE


def content(tmp_path: Path) -> tuple[bytes, Manifest]:
    data = os.urandom(SIZE)
    original = tmp_path / "original.bin"
    original.write_bytes(data)
    return data, build_manifest(str(original), "film.bin")


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_a_replayed_chunk_header_drops_the_rogue_not_the_file(
    tmp_path: Path,
) -> None:
    data, manifest = content(tmp_path)
    rogue = FakeSecondary("rogue", manifest, data, rogue=True)
    # The honest source says hello only after the attack, so the rogue gets
    # its two chunks and its chance to overwrite one.
    honest = FakeSecondary("honest", manifest, data, gate=rogue.attacked)
    reported: list[str] = []
    try:
        sources = [await rogue.listen(reactor), await honest.listen(reactor)]
        target = tmp_path / "film.bin"
        download = Download(
            manifest.info,
            sources,
            str(target),
            reactor=reactor,
            onBadSource=reported.append,
        )
        result = await download.start()
    finally:
        await rogue.stop()
        await honest.stop()
    assert rogue.attacked.called
    assert sha256_file(target) == hashlib.sha256(data).hexdigest()
    assert reported == ["rogue"]
    assert "chunk header" in download.sourceErrors["rogue"]
    assert result.sources.get("honest", 0) >= 2 * MIN_CHUNK_SIZE


@pytest_twisted.ensureDeferred
async def test_a_busy_source_is_dropped_as_busy_and_not_reported(
    tmp_path: Path,
) -> None:
    """It was dropped as 'connection lost'."""
    data, manifest = content(tmp_path)
    full = FullSecondary("full", manifest, data)
    honest = FakeSecondary("honest", manifest, data)
    reported: list[str] = []
    target = tmp_path / "film.bin"
    try:
        sources = [await full.listen(reactor), await honest.listen(reactor)]
        download = Download(
            manifest.info,
            sources,
            str(target),
            reactor=reactor,
            onBadSource=reported.append,
        )
        await download.start()
    finally:
        await full.stop()
        await honest.stop()
    assert sha256_file(target) == hashlib.sha256(data).hexdigest()
    assert download.sourceErrors["full"] == (
        "busy: 127.0.0.1 already holds 64 connections to this server"
    )
    assert reported == []


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_with_only_the_rogue_the_download_fails_and_renames_nothing(
    tmp_path: Path,
) -> None:
    data, manifest = content(tmp_path)
    rogue = FakeSecondary("rogue", manifest, data, rogue=True)
    target = tmp_path / "film.bin"
    try:
        sources = [await rogue.listen(reactor)]
        with pytest.raises(DownloadError):
            await Download(manifest.info, sources, str(target), reactor=reactor).start()
    finally:
        await rogue.stop()
    assert rogue.attacked.called
    assert not target.exists()


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_replication_never_adopts_the_rogues_copy(tmp_path: Path) -> None:
    data, manifest = content(tmp_path)
    folder = tmp_path / "data"
    folder.mkdir()
    index = DataIndex(FilePath(str(folder)), FilePath(str(tmp_path / "cache.json")))
    reports: list[tuple[str, bool, str]] = []
    replicator = Replicator(
        index, "s2", reactor, lambda *report: reports.append(report)
    )
    rogue = FakeSecondary("rogue", manifest, data, rogue=True)
    try:
        replicator.replicate(manifest.info, [await rogue.listen(reactor)])
        await eventually(lambda: reports, "the copy to end")
    finally:
        await rogue.stop()
    [(name, ok, _)] = reports
    assert (name, ok) == ("film.bin", False)
    assert "film.bin" not in index.entries
    assert not (folder / "film.bin").exists()
    assert not list((folder / ".redesdl-incoming").iterdir())


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_replication_adopts_only_the_honest_bytes(tmp_path: Path) -> None:
    data, manifest = content(tmp_path)
    folder = tmp_path / "data"
    folder.mkdir()
    index = DataIndex(FilePath(str(folder)), FilePath(str(tmp_path / "cache.json")))
    reports: list[tuple[str, bool, str]] = []
    replicator = Replicator(
        index, "s2", reactor, lambda *report: reports.append(report)
    )
    rogue = FakeSecondary("rogue", manifest, data, rogue=True)
    honest = FakeSecondary("honest", manifest, data, gate=rogue.attacked)
    try:
        sources = [await rogue.listen(reactor), await honest.listen(reactor)]
        replicator.replicate(manifest.info, sources)
        await eventually(lambda: reports, "the copy to end")
    finally:
        await rogue.stop()
        await honest.stop()
    assert reports == [("film.bin", True, "")]
    assert sha256_file(folder / "film.bin") == hashlib.sha256(data).hexdigest()


@pytest_twisted.ensureDeferred
async def test_replication_creates_no_folder_outside_the_data_folder(
    tmp_path: Path,
) -> None:
    data = os.urandom(SIZE)
    original = tmp_path / "original.bin"
    original.write_bytes(data)
    manifest = build_manifest(str(original), "a/deeper/film.bin")
    folder, outside = tmp_path / "data", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / "a").symlink_to(outside)
    index = DataIndex(FilePath(str(folder)), FilePath(str(tmp_path / "cache.json")))
    reports: list[tuple[str, bool, str]] = []
    replicator = Replicator(
        index, "s2", reactor, lambda *report: reports.append(report)
    )
    honest = FakeSecondary("honest", manifest, data)
    try:
        replicator.replicate(manifest.info, [await honest.listen(reactor)])
        await eventually(lambda: reports, "the copy to end")
    finally:
        await honest.stop()
    [(_, ok, reason)] = reports
    assert not ok and "outside the data folder" in reason
    assert list(outside.iterdir()) == []
    assert not list((folder / ".redesdl-incoming").iterdir())
