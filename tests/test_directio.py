"""Direct writes: whole aligned blocks around the page cache, the rest as before.

Real files in the test's folder; where the file system there refuses
O_DIRECT, the tests that need it are skipped (the fallback tests still run).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from pathlib import Path

import pytest

from redesdl.manifest import MIN_CHUNK_SIZE, Manifest
from redesdl.transfer import directio
from redesdl.transfer.directio import ALIGNMENT, DirectFile, StagedWrite
from redesdl.transfer.store import ChunkStore
from redesdl.transfer.writeroute import Route, WriteRouter
from tests import test_transfer_store as store_tests

#: The store tests' file: three whole chunks and a last one of 100 bytes, a
#: tail off the block.
content = store_tests.content
SIZE = store_tests.SIZE

#: Pieces of the sizes a socket hands up, none of them a whole block.
PIECES = [1, 4095, 70001, 5, 65536 + 17]


def opened(
    tmp_path: Path, manifest: Manifest, direct_io: bool | None = True
) -> ChunkStore:
    return store_tests.opened(tmp_path, manifest, direct_io=direct_io)


def needs_direct(store: ChunkStore) -> DirectFile:
    if store.direct is None:
        store.close()
        pytest.skip("this file system refuses O_DIRECT")
    return store.direct


@pytest.fixture
def direct_store(
    content: tuple[bytes, Manifest], tmp_path: Path
) -> tuple[bytes, Manifest, ChunkStore, DirectFile]:
    """The store tests' file, and a store opened for direct writes."""
    data, manifest = content
    store = opened(tmp_path, manifest)
    return data, manifest, store, needs_direct(store)


def in_pieces(data: bytes) -> list[bytes]:
    pieces, at = [], 0
    for size in PIECES * (len(data) // sum(PIECES) + 1):
        if at >= len(data):
            break
        pieces.append(data[at : at + size])
        at += size
    return pieces


def write_all(store: ChunkStore, data: bytes, manifest: Manifest) -> None:
    for index in range(len(manifest.chunk_hashes)):
        offset, length = manifest.chunk_range(index)
        writer = store.begin(index)
        for piece in in_pieces(data[offset : offset + length]):
            writer.write(index, piece)
        assert store.verify(writer)


def download_whole(
    store: ChunkStore, data: bytes, manifest: Manifest, tmp_path: Path
) -> None:
    """Every chunk in odd pieces, then the rename; the file must be C{data}."""
    write_all(store, data, manifest)
    store.finish()
    store.close()
    assert (tmp_path / "out.bin").read_bytes() == data


class WriteLog:
    """Every os.pwrite: to which descriptor, where, how much, from what address."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int, int, int]] = []
        self.refuse: int | None = None
        real = os.pwrite

        def pwrite(fd: int, data: memoryview, offset: int) -> int:
            view = memoryview(data)
            address = (
                ctypes.addressof(ctypes.c_char.from_buffer(view))
                if (not view.readonly and len(view))
                else 0
            )
            self.calls.append((fd, offset, len(view), address))
            if self.refuse is not None and fd == self.refuse:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            return real(fd, data, offset)

        monkeypatch.setattr(directio.os, "pwrite", pwrite)

    def to(self, fd: int) -> list[tuple[int, int, int, int]]:
        return [call for call in self.calls if call[0] == fd]


def test_a_download_written_in_odd_pieces_lands_whole_in_aligned_blocks(
    direct_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, manifest, store, direct = direct_store
    log = WriteLog(monkeypatch)
    download_whole(store, data, manifest, tmp_path)
    direct_writes = log.to(direct.fd)
    assert sum(length for _, _, length, _ in direct_writes) == SIZE - 100
    for _, offset, length, address in direct_writes:
        assert offset % ALIGNMENT == length % ALIGNMENT == address % ALIGNMENT == 0
    # Only the last 100 bytes, which fill no block, went the ordinary way.
    assert [(o, n) for fd, o, n, _ in log.calls if fd != direct.fd] == [
        (SIZE - 100, 100)
    ]


def test_a_stage_is_reused_and_an_abandoned_chunk_gives_its_stage_back(
    direct_store, tmp_path: Path
) -> None:
    data, manifest, store, direct = direct_store
    dropped = store.begin(1)
    dropped.write(1, data[MIN_CHUNK_SIZE : MIN_CHUNK_SIZE + 5000])
    store.abandon(dropped)
    write_all(store, data, manifest)
    assert direct.stages == 1
    store.finish()
    store.close()
    assert (tmp_path / "out.bin").read_bytes() == data


def test_a_refused_direct_write_falls_back_for_the_rest_of_the_download(
    direct_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, manifest, store, direct = direct_store
    log = WriteLog(monkeypatch)
    log.refuse = direct.fd
    download_whole(store, data, manifest, tmp_path)
    assert not direct.usable
    # One refused try; every later chunk went straight to the ordinary path.
    assert len(log.to(direct.fd)) == 1


def test_a_file_system_without_direct_writes_is_written_the_ordinary_way(
    content, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, manifest = content
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(directio.os, "open", refusing_open)
    store = opened(tmp_path, manifest)
    assert store.direct is None
    download_whole(store, data, manifest, tmp_path)


def test_a_disk_error_is_raised_not_hidden(
    direct_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _, store, direct = direct_store
    real = os.pwrite

    def full(fd: int, piece: memoryview, offset: int) -> int:
        if fd == direct.fd:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, piece, offset)

    monkeypatch.setattr(directio.os, "pwrite", full)
    writer = store.begin(0)
    with pytest.raises(OSError) as raised:
        writer.write(0, data[:MIN_CHUNK_SIZE])
    assert raised.value.errno == errno.ENOSPC
    assert direct.usable
    store.close()


def test_replication_and_other_stores_keep_the_page_cache(
    content, tmp_path: Path
) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest, direct_io=False)
    assert store.direct is None
    download_whole(store, data, manifest, tmp_path)


def test_a_path_replaced_before_the_second_open_is_not_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.bin.part"
    path.write_bytes(bytes(ALIGNMENT))
    other = tmp_path / "planted"
    other.write_bytes(bytes(ALIGNMENT))
    fd = os.open(path, os.O_RDWR)
    try:
        os.replace(other, path)
        assert DirectFile.open(str(path), fd) is None
    finally:
        os.close(fd)


def test_a_staged_write_keeps_a_partial_block_until_the_end(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(3 * ALIGNMENT))
    fd = os.open(path, os.O_RDWR)
    direct = DirectFile.open(str(path), fd, stage_size=2 * ALIGNMENT)
    if direct is None:
        os.close(fd)
        pytest.skip("this file system refuses O_DIRECT")
    try:
        staged = StagedWrite(direct, fd, 0)
        payload = os.urandom(2 * ALIGNMENT + 10)
        staged.add(payload[: ALIGNMENT + 1])
        # Nothing written yet: the stage is not full.
        assert path.read_bytes() == bytes(3 * ALIGNMENT)
        staged.add(payload[ALIGNMENT + 1 :])
        staged.finish()
        assert path.read_bytes()[: len(payload)] == payload
        assert direct.stages == 1
    finally:
        direct.close()
        os.close(fd)


def test_stages_are_page_aligned(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDWR)
    direct = DirectFile.open(str(path), fd)
    if direct is None:
        os.close(fd)
        pytest.skip("this file system refuses O_DIRECT")
    try:
        stage = direct.take()
        address = ctypes.addressof(ctypes.c_char.from_buffer(stage))
        assert address % mmap.PAGESIZE == 0
        direct.give(stage)
        del stage
    finally:
        direct.close()
        os.close(fd)


def test_by_default_each_stage_goes_the_way_the_router_chooses(
    content, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest, direct_io=None)
    direct = needs_direct(store)
    # The cache measured ten times cheaper; one stage in two probes direct.
    store.router = WriteRouter(probe_every=2)
    store.router.record(Route.DIRECT, 2**20, 0.010)
    store.router.record(Route.CACHED, 2**20, 0.001)
    log = WriteLog(monkeypatch)
    download_whole(store, data, manifest, tmp_path)
    # One stage per chunk: 0 and 2 through the cache, 1 around it.
    assert [(o, n) for _, o, n, _ in log.to(direct.fd)] == [
        (MIN_CHUNK_SIZE, MIN_CHUNK_SIZE)
    ]
    assert [(o, n) for fd, o, n, _ in log.calls if fd != direct.fd] == [
        (0, MIN_CHUNK_SIZE),
        (2 * MIN_CHUNK_SIZE, MIN_CHUNK_SIZE),
        (SIZE - 100, 100),
    ]


def test_by_default_both_ways_are_measured_from_the_first_stages(
    content, tmp_path: Path
) -> None:
    data, manifest = content
    store = opened(tmp_path, manifest, direct_io=None)
    needs_direct(store)
    router = store.router
    assert router is not None
    download_whole(store, data, manifest, tmp_path)
    # The first stage went around the cache, the second through it.
    assert router.written(Route.DIRECT) >= MIN_CHUNK_SIZE
    assert router.written(Route.CACHED) >= MIN_CHUNK_SIZE
    assert router.written(Route.DIRECT) + router.written(Route.CACHED) == SIZE - 100
