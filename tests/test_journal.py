"""The journal and the recheck: no chunk verified before a kill is lost."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import pytest_twisted

from redesdl.manifest import MIN_CHUNK_SIZE, Manifest, build_manifest
from redesdl.transfer.journal import (
    Journal,
    decode_record,
    encode_record,
    journal_path,
    read_journal,
)
from redesdl.transfer.resume import chunks_to_check, load_claimed, save_state
from redesdl.transfer.store import ChunkStore

SIZE = 6 * MIN_CHUNK_SIZE + 100


def manifest_of(tmp_path: Path, data: bytes, name: str = "f.bin") -> Manifest:
    path = tmp_path / f"source-{hashlib.sha256(data).hexdigest()[:8]}"
    path.write_bytes(data)
    return build_manifest(str(path), name)


@pytest.fixture
def content(tmp_path: Path) -> tuple[bytes, Manifest]:
    data = os.urandom(SIZE)
    return data, manifest_of(tmp_path, data)


def chunk(data: bytes, manifest: Manifest, index: int) -> bytes:
    offset, length = manifest.chunk_range(index)
    return data[offset : offset + length]


def store_for(tmp_path: Path) -> ChunkStore:
    target = str(tmp_path / "out.bin")
    return ChunkStore(target, target + ".part", False)


def write_verified(
    store: ChunkStore, data: bytes, manifest: Manifest, chunks: list[int]
) -> None:
    for index in chunks:
        writer = store.begin(index)
        writer.write(index, chunk(data, manifest, index))
        assert store.verify(writer)


def part_holding(tmp_path: Path, data: bytes, manifest: Manifest, chunks) -> str:
    """A .part with the right bytes in C{chunks} only, zeros elsewhere."""
    part = bytearray(len(data))
    for index in chunks:
        offset, length = manifest.chunk_range(index)
        part[offset : offset + length] = chunk(data, manifest, index)
    path = tmp_path / "out.bin.part"
    path.write_bytes(bytes(part))
    return str(path)


# -- records ----------------------------------------------------------------


def test_a_record_round_trips_and_any_damage_is_refused() -> None:
    line = encode_record("3 abc")
    assert decode_record(line) == "3 abc"
    assert decode_record(line[:-1]) is None  # torn: no newline
    assert decode_record(line[:-4] + b"00\n") is None  # wrong checksum
    assert decode_record(b"4" + line[1:]) is None  # body changed
    assert decode_record(b"\xff\xfe 00000000\n") is None
    assert decode_record(b"\n") is None


def test_the_journal_keeps_whole_records_and_skips_a_torn_last_one(
    content, tmp_path
) -> None:
    _, manifest = content
    part = str(tmp_path / "out.bin.part")
    journal = Journal(part, manifest)
    journal.restart(0)
    journal.record(0)
    journal.record(4)
    journal.close()
    whole = Path(journal_path(part)).read_bytes()
    assert read_journal(part, manifest).chunks == [0, 4]
    torn = encode_record(f"5 {manifest.chunk_hashes[5]}")[:-7]
    Path(journal_path(part)).write_bytes(whole + torn)
    assert read_journal(part, manifest).chunks == [0, 4]


def test_records_with_a_wrong_hash_or_index_are_ignored(content, tmp_path) -> None:
    _, manifest = content
    part = str(tmp_path / "out.bin.part")
    journal = Journal(part, manifest)
    journal.restart(0)
    journal.record(1)
    journal.close()
    with open(journal_path(part), "ab") as f:
        f.write(encode_record(f"2 {manifest.chunk_hashes[3]}"))
        f.write(encode_record(f"99 {manifest.chunk_hashes[0]}"))
        f.write(encode_record(f"-1 {manifest.chunk_hashes[0]}"))
        f.write(b"garbage without a checksum\n")
        f.write(encode_record(f"3 {manifest.chunk_hashes[3]}"))
    assert read_journal(part, manifest).chunks == [1, 3]


def test_a_journal_of_another_content_claims_nothing(content, tmp_path) -> None:
    data, manifest = content
    other = manifest_of(tmp_path, os.urandom(SIZE))
    part = part_holding(tmp_path, data, manifest, [0, 1])
    journal = Journal(part, other)
    journal.restart(0)
    journal.record(0)
    journal.close()
    assert read_journal(part, manifest) is None
    assert chunks_to_check(part, manifest) is None


def test_restart_empties_the_journal(content, tmp_path) -> None:
    _, manifest = content
    part = str(tmp_path / "out.bin.part")
    journal = Journal(part, manifest)
    journal.restart(0)
    journal.record(2)
    journal.restart(0)
    journal.record(3)
    journal.close()
    assert read_journal(part, manifest).chunks == [3]


# -- what a resume checks ---------------------------------------------------


def test_snapshot_and_journal_claims_are_merged(content, tmp_path) -> None:
    data, manifest = content
    part = part_holding(tmp_path, data, manifest, [0, 1, 2])
    save_state(part, manifest, {0, 1})
    journal = Journal(part, manifest)
    journal.restart(0)
    journal.record(2)
    journal.close()
    assert chunks_to_check(part, manifest) == ([0, 1, 2], False)


def test_a_part_without_state_is_rechecked_whole(content, tmp_path) -> None:
    data, manifest = content
    part = part_holding(tmp_path, data, manifest, [1, 4])
    count = len(manifest.chunk_hashes)
    assert chunks_to_check(part, manifest) == (list(range(count)), True)


# -- the store ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_chunks_verified_before_a_kill_are_reused(content, tmp_path) -> None:
    data, manifest = content
    first = store_for(tmp_path)
    assert await first.open(manifest) == []
    write_verified(first, data, manifest, [0, 2, 5])
    # Killed: no snapshot was ever taken, no close, only what reached the
    # files; the kernel closed the descriptor, and so dropped the lock.
    assert first.direct is None
    os.close(first._fd)  # type: ignore[arg-type]
    part = first.path
    assert load_claimed(part, manifest) is None
    assert chunks_to_check(part, manifest) == ([0, 2, 5], False)
    second = store_for(tmp_path)
    assert await second.open(manifest) == [0, 2, 5]
    # The kept chunks went into a fresh snapshot; the journal started over.
    assert load_claimed(part, manifest) == [0, 2, 5]
    assert read_journal(part, manifest).chunks == []
    write_verified(second, data, manifest, [1, 3, 4, 6])
    second.finish()
    second.close()
    assert (tmp_path / "out.bin").read_bytes() == data
    assert not os.path.exists(journal_path(part))
    assert not os.path.exists(part + ".json")


@pytest_twisted.ensureDeferred
async def test_a_journal_claiming_wrong_bytes_is_not_trusted(content, tmp_path) -> None:
    data, manifest = content
    first = store_for(tmp_path)
    await first.open(manifest)
    write_verified(first, data, manifest, [0, 1, 2])
    first.close()
    with open(first.path, "r+b") as f:
        f.seek(manifest.chunk_range(1)[0] + 10)
        f.write(b"rot")
    second = store_for(tmp_path)
    assert await second.open(manifest) == [0, 2]
    assert not second.is_verified(1)
    second.close()


@pytest_twisted.ensureDeferred
async def test_a_part_without_state_keeps_the_chunks_that_match(
    content, tmp_path
) -> None:
    data, manifest = content
    part = part_holding(tmp_path, data, manifest, [1, 3, 6])
    store = store_for(tmp_path)
    assert await store.open(manifest) == [1, 3, 6]
    assert load_claimed(part, manifest) == [1, 3, 6]
    write_verified(store, data, manifest, [0, 2, 4, 5])
    store.finish()
    store.close()
    assert (tmp_path / "out.bin").read_bytes() == data


@pytest_twisted.ensureDeferred
async def test_a_part_with_state_of_another_content_starts_over(
    content, tmp_path
) -> None:
    data, manifest = content
    other = manifest_of(tmp_path, os.urandom(SIZE))
    part = part_holding(tmp_path, data, manifest, [0, 1])
    save_state(part, other, {0, 1})
    store = store_for(tmp_path)
    assert await store.open(manifest) == []
    assert Path(part).read_bytes() == bytes(SIZE)
    store.close()


@pytest_twisted.ensureDeferred
async def test_a_snapshot_folds_the_journal(content, tmp_path) -> None:
    data, manifest = content
    store = store_for(tmp_path)
    await store.open(manifest)
    write_verified(store, data, manifest, [0, 1])
    store.save_progress()
    assert load_claimed(store.path, manifest) == [0, 1]
    assert read_journal(store.path, manifest).chunks == []
    write_verified(store, data, manifest, [2])
    assert read_journal(store.path, manifest).chunks == [2]
    store.save_progress()
    assert load_claimed(store.path, manifest) == [0, 1, 2]
    os.unlink(store.path + ".json")
    store.save_progress()  # nothing verified since: no fsync, no new snapshot
    assert not os.path.exists(store.path + ".json")
    store.close()
    # Snapshot lost, journal folded: the recheck still finds every chunk.
    again = store_for(tmp_path)
    assert await again.open(manifest) == [0, 1, 2]
    again.close()


@pytest_twisted.ensureDeferred
async def test_folders_planted_as_records_do_not_fail_a_verified_download(
    content, tmp_path, warnings: list[str]
) -> None:
    """The file verified and was renamed, yet get ended 'unexpected error:
    IsADirectoryError', exit 1."""
    data, manifest = content
    os.mkdir(tmp_path / "out.bin.part.json")
    os.mkdir(tmp_path / "out.bin.part.journal")
    store = store_for(tmp_path)
    assert await store.open(manifest) == []
    write_verified(store, data, manifest, list(range(len(manifest.chunk_hashes))))
    store.finish()
    store.close()
    assert (tmp_path / "out.bin").read_bytes() == data
    assert any(
        "cannot remove" in line and "out.bin.part.journal: Is a directory" in line
        for line in warnings
    )
