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
from hypothesis import given, settings
from hypothesis import strategies as st

from redesdl.manifest import MIN_CHUNK_SIZE, Manifest
from redesdl.transfer import directio
from redesdl.transfer.directio import ALIGNMENT, DirectFile, StagedWrite
from redesdl.transfer.store import ChunkStore, ChunkWriter
from redesdl.transfer.writeroute import Route, WriteRouter
from tests import test_transfer_store as store_tests
from tests.test_transfer_store import chunk

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


@pytest.fixture
def routed_store(
    content: tuple[bytes, Manifest], tmp_path: Path
) -> tuple[bytes, Manifest, ChunkStore, DirectFile, WriteRouter]:
    """The store tests' file, and a store that chooses its way (the default)."""
    data, manifest = content
    store = opened(tmp_path, manifest, direct_io=None)
    direct = needs_direct(store)
    assert store.router is not None
    return data, manifest, store, direct, store.router


def test_by_default_chunks_go_through_the_page_cache_while_it_is_cheap(
    routed_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, manifest, store, direct, router = routed_store
    log = WriteLog(monkeypatch)
    download_whole(store, data, manifest, tmp_path)
    assert log.to(direct.fd) == []
    assert router.written(Route.CACHED) == SIZE
    assert direct.stages == 0


def test_a_download_leaves_the_cache_at_the_next_block_once_it_proves_dear(
    routed_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, manifest, store, direct, router = routed_store
    log = WriteLog(monkeypatch)
    first = store.begin(0)
    first.write(0, data[:5000])
    # As if the host had been faulting in every page: 8 MiB cost 1 CPU-s.
    router.record(Route.CACHED, 8 * 2**20, 1.0)
    first.write(0, data[5000:MIN_CHUNK_SIZE])
    assert store.verify(first)
    for index in range(1, len(manifest.chunk_hashes)):
        writer = store.begin(index)
        for piece in in_pieces(chunk(data, manifest, index)):
            writer.write(index, piece)
        assert store.verify(writer)
    store.finish()
    store.close()
    assert (tmp_path / "out.bin").read_bytes() == data
    # Up to the next block through the cache, then around it; the tail of
    # the file, off a block, through the cache again.
    assert [(o, n) for fd, o, n, _ in log.calls if fd != direct.fd] == [
        (0, 5000),
        (5000, 2 * ALIGNMENT - 5000),
        (SIZE - 100, 100),
    ]
    assert [(o, n) for _, o, n, _ in log.to(direct.fd)] == [
        (2 * ALIGNMENT, MIN_CHUNK_SIZE - 2 * ALIGNMENT),
        (MIN_CHUNK_SIZE, MIN_CHUNK_SIZE),
        (2 * MIN_CHUNK_SIZE, MIN_CHUNK_SIZE),
    ]
    assert router.written(Route.DIRECT) == 3 * MIN_CHUNK_SIZE - 2 * ALIGNMENT


class Switch(WriteRouter):
    """A router told when to leave the cache, whatever the writes cost."""

    turned = False

    def chunk_route(self) -> Route:
        return Route.DIRECT if self.turned else Route.CACHED


@given(
    pieces=st.lists(st.integers(1, 3 * ALIGNMENT), min_size=1, max_size=40),
    switch_after=st.integers(0, 40),
)
@settings(max_examples=60, deadline=None)
def test_a_chunk_switched_at_any_piece_lands_whole_in_aligned_direct_writes(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[int], switch_after: int
) -> None:
    folder = tmp_path_factory.mktemp("switch")
    data = os.urandom(sum(pieces))
    path = folder / "f"
    path.write_bytes(bytes(len(data)))
    fd = os.open(path, os.O_RDWR)
    direct = DirectFile.open(str(path), fd, stage_size=4 * ALIGNMENT)
    if direct is None:
        os.close(fd)
        pytest.skip("this file system refuses O_DIRECT")
    router = Switch()
    writer = ChunkWriter(fd, 0, 0, len(data), "", direct, router)
    written: list[tuple[int, int, int]] = []
    real = os.pwrite

    def pwrite(target: int, piece: memoryview, offset: int) -> int:
        written.append((target, offset, len(piece)))
        return real(target, piece, offset)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(directio.os, "pwrite", pwrite)
            at = 0
            for number, size in enumerate(pieces):
                router.turned = number >= switch_after
                writer.write(0, data[at : at + size])
                at += size
        assert path.read_bytes() == data
        direct_writes = [(o, n) for t, o, n in written if t == direct.fd]
        for offset, length in direct_writes:
            assert offset % ALIGNMENT == length % ALIGNMENT == 0
        # Around the cache: every whole block from the first boundary after
        # the switch; through it: the bytes before, and the last ones off a
        # block.
        switched_at = sum(pieces[:switch_after])
        boundary = -(-switched_at // ALIGNMENT) * ALIGNMENT
        whole_end = len(data) - len(data) % ALIGNMENT
        expected = max(0, whole_end - boundary) if switch_after < len(pieces) else 0
        assert sum(n for _, n in direct_writes) == expected
        if expected:
            assert direct_writes[0][0] == boundary
        cached = [(o, n) for t, o, n in written if t != direct.fd]
        assert all(o + n <= boundary or o >= whole_end for o, n in cached)
    finally:
        writer.close()
        direct.close()
        os.close(fd)
