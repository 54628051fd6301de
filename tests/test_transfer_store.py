"""The store: writes only inside a requested chunk, no rewrite, checks before rename."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from redesdl.client.job import discard_partial
from redesdl.manifest import MIN_CHUNK_SIZE, Manifest, build_manifest
from redesdl.transfer import store as store_module
from redesdl.transfer.errors import (
    ChunkClosedError,
    ChunkCorruptError,
    DestinationExistsError,
    DiskError,
    IntegrityError,
    OutsideChunkError,
)
from redesdl.transfer.journal import read_journal
from redesdl.transfer.partlock import PartInUseError, claim_part, hold_part
from redesdl.transfer.resume import save_state
from redesdl.transfer.store import EMPTY_SHA256, ChunkStore

SIZE = 3 * MIN_CHUNK_SIZE + 100


@pytest.fixture
def content(tmp_path: Path) -> tuple[bytes, Manifest]:
    data = os.urandom(SIZE)
    (tmp_path / "original.bin").write_bytes(data)
    return data, build_manifest(str(tmp_path / "original.bin"), "f.bin")


def opened(
    tmp_path: Path,
    manifest: Manifest,
    overwrite: bool = False,
    direct_io: bool | None = False,
) -> ChunkStore:
    target = str(tmp_path / "out.bin")
    store = ChunkStore(target, target + ".part", overwrite, direct_io)
    store.check_destination()
    outcome: list[object] = []
    Deferred.fromCoroutine(store.open(manifest)).addBoth(outcome.append)
    assert outcome == [[]]
    return store


def chunk(data: bytes, manifest: Manifest, index: int) -> bytes:
    offset, length = manifest.chunk_range(index)
    return data[offset : offset + length]


def fill(store: ChunkStore, data: bytes, manifest: Manifest) -> None:
    for index in range(len(manifest.chunk_hashes)):
        writer = store.begin(index)
        writer.write(index, chunk(data, manifest, index))
        assert store.verify(writer)


def test_a_whole_download_is_renamed(content, tmp_path: Path) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest)
    fill(store, data, manifest)
    store.finish()
    store.close()
    assert (tmp_path / "out.bin").read_bytes() == data
    assert not (tmp_path / "out.bin.part").exists()


def test_writes_outside_the_requested_chunk_are_refused(content, tmp_path) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest)
    writer = store.begin(1)
    with pytest.raises(OutsideChunkError):
        writer.write(2, chunk(data, manifest, 2))
    with pytest.raises(ChunkClosedError):
        writer.write(1, chunk(data, manifest, 1))
    writer = store.begin(1)
    writer.write(1, chunk(data, manifest, 1)[:10])
    with pytest.raises(OutsideChunkError):
        writer.write(1, bytes(MIN_CHUNK_SIZE))
    part = (tmp_path / "out.bin.part").read_bytes()
    assert part[MIN_CHUNK_SIZE : MIN_CHUNK_SIZE + 10] == chunk(data, manifest, 1)[:10]
    assert part[MIN_CHUNK_SIZE + 10 :] == bytes(SIZE - MIN_CHUNK_SIZE - 10)
    store.close()


def test_a_verified_chunk_is_never_written_again(content, tmp_path: Path) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest)
    writer = store.begin(0)
    writer.write(0, chunk(data, manifest, 0))
    assert store.verify(writer)
    with pytest.raises(ChunkClosedError):
        writer.write(0, b"garbage")
    with pytest.raises(ChunkClosedError):
        store.begin(0)
    copy = store.begin_copy(0)
    copy.write(0, b"x" * len(chunk(data, manifest, 0)))
    assert not store.verify(copy)
    on_disk = (tmp_path / "out.bin.part").read_bytes()
    assert on_disk[:MIN_CHUNK_SIZE] == chunk(data, manifest, 0)
    store.close()


def test_a_corrupt_chunk_is_not_verified(content, tmp_path: Path) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest)
    writer = store.begin(2)
    writer.write(2, bytes(len(chunk(data, manifest, 2))))
    with pytest.raises(ChunkCorruptError):
        store.verify(writer)
    assert not store.is_verified(2)
    incomplete = store.begin(2)
    incomplete.write(2, chunk(data, manifest, 2)[:5])
    with pytest.raises(ChunkCorruptError):
        store.verify(incomplete)
    store.close()


def test_a_winning_duplicate_closes_the_slow_writer(content, tmp_path: Path) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest)
    slow = store.begin(1)
    slow.write(1, b"\xff" * 100)
    copy = store.begin_copy(1)
    with pytest.raises(OutsideChunkError):
        store.begin_copy(1).write(1, bytes(MIN_CHUNK_SIZE + 1))
    copy.write(1, chunk(data, manifest, 1))
    assert store.verify(copy)
    with pytest.raises(ChunkClosedError):
        slow.write(1, b"late")
    assert not store.verify(slow)
    part = (tmp_path / "out.bin.part").read_bytes()
    assert part[MIN_CHUNK_SIZE : 2 * MIN_CHUNK_SIZE] == chunk(data, manifest, 1)
    store.close()


def test_a_winning_scratch_duplicate_is_copied_into_the_part(
    content, tmp_path: Path
) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest)
    scratch = tmp_path / "out.bin.part.dup"
    slow = store.begin(1)
    slow.write(1, b"\xff" * 100)
    for index, wrong in ((1, bytes(MIN_CHUNK_SIZE + 1)), (2, chunk(data, manifest, 2))):
        refused = store.begin_scratch(1)
        with pytest.raises(OutsideChunkError):
            refused.write(index, wrong)
        store.abandon(refused)
    copy = store.begin_scratch(1)
    copy.write(1, chunk(data, manifest, 1))
    assert scratch.exists()
    assert store.verify(copy)
    with pytest.raises(ChunkClosedError):
        slow.write(1, b"late")
    assert not store.verify(slow)
    with pytest.raises(ChunkClosedError):
        store.begin_scratch(1)
    part = (tmp_path / "out.bin.part").read_bytes()
    assert part[MIN_CHUNK_SIZE : 2 * MIN_CHUNK_SIZE] == chunk(data, manifest, 1)
    assert read_journal(store.path, manifest).chunks == [1]
    # Nothing left in flight: the scratch space went back at once.
    assert scratch.stat().st_size == 0
    store.close()
    assert not scratch.exists()


def test_a_newer_scratch_copy_of_a_chunk_closes_the_older(
    content, tmp_path: Path
) -> None:
    # Both would write at the chunk's place in the scratch file: a stalled
    # (or lying) older copy must not write among the bytes of the newer.
    data, manifest = content
    store = opened(tmp_path, manifest)
    good = chunk(data, manifest, 1)
    older = store.begin_scratch(1)
    older.write(1, good[:100])
    newer = store.begin_scratch(1)
    with pytest.raises(ChunkClosedError):
        older.write(1, b"\xff" * 4096)
    newer.write(1, good)
    assert store.verify(newer)
    assert not store.verify(older)
    part = (tmp_path / "out.bin.part").read_bytes()
    assert part[MIN_CHUNK_SIZE : 2 * MIN_CHUNK_SIZE] == good
    store.close()


def test_a_scratch_duplicate_that_does_not_verify_is_never_copied(
    content, tmp_path: Path
) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest)
    direct = store.begin(2)
    direct.write(2, chunk(data, manifest, 2)[:10])
    wrong = store.begin_scratch(2)
    wrong.write(2, bytes(len(chunk(data, manifest, 2))))
    with pytest.raises(ChunkCorruptError):
        store.verify(wrong)
    assert not store.is_verified(2)
    # Too late: the chunk verified through its direct writer meanwhile.
    late = store.begin_scratch(0)
    first = store.begin(0)
    first.write(0, chunk(data, manifest, 0))
    assert store.verify(first)
    late.write(0, b"x" * MIN_CHUNK_SIZE)
    assert not store.verify(late)
    part = (tmp_path / "out.bin.part").read_bytes()
    assert part[:MIN_CHUNK_SIZE] == chunk(data, manifest, 0)
    offset, length = manifest.chunk_range(2)
    assert part[offset : offset + 10] == chunk(data, manifest, 2)[:10]
    assert part[offset + 10 : offset + length] == bytes(length - 10)
    # The direct writer was never closed by the losing duplicate.
    direct.write(2, chunk(data, manifest, 2)[10:])
    assert store.verify(direct)
    store.close()
    assert not (tmp_path / "out.bin.part.dup").exists()


def test_a_scratch_duplicate_is_copied_by_read_and_write_across_file_systems(
    content, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, manifest = content
    calls: list[int] = []

    def cross_device(*args: object) -> int:
        calls.append(1)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", cross_device)
    monkeypatch.setattr(store_module, "COPY_PIECE", 10_000)
    store = opened(tmp_path, manifest)
    copy = store.begin_scratch(3)
    copy.write(3, chunk(data, manifest, 3))
    assert store.verify(copy)
    assert calls == [1]
    offset, length = manifest.chunk_range(3)
    part = (tmp_path / "out.bin.part").read_bytes()
    assert part[offset : offset + length] == chunk(data, manifest, 3)
    store.close()


def test_a_scratch_file_left_from_before_is_removed_on_resume(
    content, tmp_path: Path
) -> None:
    _, manifest = content
    (tmp_path / "out.bin.part.dup").write_bytes(b"stale")
    store = opened(tmp_path, manifest)
    assert not (tmp_path / "out.bin.part.dup").exists()
    store.close()
    (tmp_path / "out.bin.part").unlink()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, tmp_path / "out.bin.part.dup")
    store = opened(tmp_path, manifest)
    assert not (tmp_path / "out.bin.part.dup").exists()
    store.close()
    assert victim.read_bytes() == b"precious"


def test_nothing_is_renamed_unless_every_chunk_verified(content, tmp_path) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest)
    for index in (0, 1, 3):
        writer = store.begin(index)
        writer.write(index, chunk(data, manifest, index))
        store.verify(writer)
    with pytest.raises(IntegrityError, match="1 chunks"):
        store.finish()
    store.close()
    assert not (tmp_path / "out.bin").exists()


def test_a_part_replaced_meanwhile_is_not_renamed(content, tmp_path: Path) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest)
    fill(store, data, manifest)
    part = tmp_path / "out.bin.part"
    part.unlink()
    part.write_bytes(b"\0" * SIZE)
    with pytest.raises(IntegrityError, match="replaced"):
        store.finish()
    store.close()
    assert not (tmp_path / "out.bin").exists()


def test_a_second_download_to_the_same_path_is_refused_until_the_first_ends(
    content, tmp_path: Path
) -> None:
    """Two downloads sharing PATH.part once let the one that lost the race
    write its bytes into the file the other had verified and renamed."""
    data, manifest = content
    first = opened(tmp_path, manifest)
    first.begin(0).write(0, chunk(data, manifest, 0))
    target = str(tmp_path / "out.bin")
    second = ChunkStore(target, target + ".part", False)
    with pytest.raises(PartInUseError, match=r"out\.bin\.part is being written"):
        second.check_destination()
    outcome: list[object] = []
    Deferred.fromCoroutine(second.open(manifest)).addBoth(outcome.append)
    outcome[0].trap(PartInUseError)  # type: ignore[attr-defined]
    # The refused one touched neither the .part nor what is kept beside it.
    assert (tmp_path / "out.bin.part").read_bytes()[:MIN_CHUNK_SIZE] == chunk(
        data, manifest, 0
    )
    with pytest.raises(DiskError, match="being written by another download"):
        discard_partial(target)
    assert (tmp_path / "out.bin.part").exists()
    fill(first, data, manifest)
    first.finish()
    first.close()
    assert (tmp_path / "out.bin").read_bytes() == data
    second = ChunkStore(target, target + ".part", True)
    second.check_destination()
    outcome = []
    Deferred.fromCoroutine(second.open(manifest)).addBoth(outcome.append)
    assert outcome == [[]]
    second.close()


def test_a_claim_that_lost_to_a_rename_is_refused(tmp_path: Path) -> None:
    """The holder renamed its .part into place between our open and our lock:
    the file we locked is no longer PATH.part."""
    part = tmp_path / "out.bin.part"
    holder = claim_part(str(part))
    assert holder is not None
    late = os.open(part, os.O_RDWR)
    os.rename(part, tmp_path / "out.bin")
    os.close(holder)
    part.write_bytes(b"a new download's")
    with pytest.raises(PartInUseError):
        hold_part(late, str(part))
    os.close(late)


def test_an_empty_file_must_have_the_hash_of_nothing(tmp_path: Path) -> None:
    store = opened(tmp_path, Manifest("e", 0, "1" * 64, ()))
    with pytest.raises(IntegrityError):
        store.finish()
    store.close()
    store = opened(tmp_path, Manifest("e", 0, EMPTY_SHA256, ()))
    store.finish()
    store.close()
    assert (tmp_path / "out.bin").read_bytes() == b""


def test_a_symlink_at_the_part_is_not_followed(content, tmp_path: Path) -> None:
    _, manifest = content
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, tmp_path / "out.bin.part")
    target = str(tmp_path / "out.bin")
    with pytest.raises(DiskError, match="symbolic link"):
        ChunkStore(target, target + ".part", False).check_destination()
    store = ChunkStore(target, target + ".part", False)
    outcome: list[object] = []
    Deferred.fromCoroutine(store.open(manifest)).addBoth(outcome.append)
    outcome[0].trap(DiskError)  # type: ignore[attr-defined]
    assert victim.read_bytes() == b"precious"


def test_a_symlink_at_the_destination_is_replaced_not_followed(
    content, tmp_path: Path
) -> None:
    data, manifest = content
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, tmp_path / "out.bin")
    with pytest.raises(DestinationExistsError):
        opened(tmp_path, manifest)
    store = opened(tmp_path, manifest, overwrite=True)
    fill(store, data, manifest)
    store.finish()
    store.close()
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "out.bin").is_symlink()
    assert (tmp_path / "out.bin").read_bytes() == data


@pytest_twisted.ensureDeferred
async def test_resume_keeps_only_chunks_that_still_match(content, tmp_path) -> None:
    data, manifest = content
    part = tmp_path / "out.bin.part"
    damaged = bytearray(data)
    damaged[MIN_CHUNK_SIZE + 3] ^= 0xFF
    part.write_bytes(bytes(damaged))
    save_state(str(part), manifest, {0, 1, 3})
    store = ChunkStore(str(tmp_path / "out.bin"), str(part), False)
    assert await store.open(manifest) == [0, 3]
    assert store.verified == {0, 3}
    with pytest.raises(ChunkClosedError):
        store.begin(0)
    for index in (1, 2):
        writer = store.begin(index)
        writer.write(index, chunk(data, manifest, index))
        assert store.verify(writer)
    store.finish()
    store.close()
    digest = hashlib.sha256((tmp_path / "out.bin").read_bytes()).hexdigest()
    assert digest == manifest.sha256


def test_restart_removes_a_part_that_is_no_regular_file(tmp_path: Path) -> None:
    """--restart refused a FIFO .part ('not a regular file'); it is no
    download's, so it is only removed."""
    os.mkfifo(tmp_path / "out.bin.part")
    discard_partial(str(tmp_path / "out.bin"))
    assert not os.path.lexists(tmp_path / "out.bin.part")
