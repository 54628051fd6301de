"""Manifests: deterministic chunking, correct hashes, strict parsing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redesdl.manifest import (
    MAX_CHUNK_SIZE,
    MAX_CHUNKS,
    MIN_CHUNK_SIZE,
    FileInfo,
    Manifest,
    build_manifest,
    chunk_count,
    chunk_size_for,
    file_sha256,
    root_of,
)
from redesdl.protocol.errors import ProtocolError


@given(st.integers(min_value=0, max_value=2**50))
def test_chunk_size_is_a_bounded_power_of_two(size: int) -> None:
    chunk = chunk_size_for(size)
    assert chunk & (chunk - 1) == 0
    assert chunk >= MIN_CHUNK_SIZE
    assert chunk <= MAX_CHUNK_SIZE or chunk_count(size) <= MAX_CHUNKS
    assert chunk_count(size) <= MAX_CHUNKS


def test_small_files_still_split_and_large_ones_use_big_chunks() -> None:
    assert chunk_count(1024 * 1024) == 4
    assert chunk_size_for(2**30) == 16 * 2**20
    assert chunk_count(0) == 0


@pytest.mark.parametrize(
    "size",
    [0, 1, MIN_CHUNK_SIZE, MIN_CHUNK_SIZE + 1, 3 * MIN_CHUNK_SIZE - 7],
)
def test_build_manifest_matches_sha256(tmp_path: Path, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    path = tmp_path / "f"
    path.write_bytes(data)
    manifest = build_manifest(str(path), "f")
    assert manifest.size == size
    assert manifest.sha256 == hashlib.sha256(data).hexdigest()
    chunk = manifest.chunk_size
    expected = [
        hashlib.sha256(data[i : i + chunk]).hexdigest() for i in range(0, size, chunk)
    ]
    assert list(manifest.chunk_hashes) == expected
    assert manifest.root == root_of(expected)
    for index in range(len(expected)):
        offset, length = manifest.chunk_range(index)
        assert data[offset : offset + length] == data[index * chunk :][:chunk]


def test_manifest_round_trips_and_matches_its_info(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * (MIN_CHUNK_SIZE + 5))
    manifest = build_manifest(str(path), "dir/f")
    again = Manifest.from_wire(manifest.to_wire())
    assert again == manifest
    assert again.matches(manifest.info)
    assert FileInfo.from_wire(manifest.info.to_wire()) == manifest.info


def test_a_manifest_with_a_forged_chunk_does_not_match(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * (MIN_CHUNK_SIZE + 5))
    manifest = build_manifest(str(path), "f")
    forged = manifest.to_wire()
    forged["chunks"][0] = "0" * 64
    assert not Manifest.from_wire(forged).matches(manifest.info)


@pytest.mark.parametrize(
    "change",
    [
        {"size": -1},
        {"size": "12"},
        {"sha256": "XYZ"},
        {"name": "../etc/passwd"},
        {"name": "/abs"},
        {"chunks": ["0" * 64] * 3},
        {"chunks": "nope"},
    ],
)
def test_malformed_manifests_are_refused(tmp_path: Path, change: dict) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    wire = {**build_manifest(str(path), "f").to_wire(), **change}
    with pytest.raises(ProtocolError) as raised:
        Manifest.from_wire(wire)
    assert raised.value.code == "bad_request"


@pytest.mark.parametrize("swap", ["fifo", "link to /dev/zero", "folder"])
def test_hashing_refuses_what_is_not_a_regular_file(tmp_path, swap: str) -> None:
    """A data file swapped for a FIFO between a scan and its hashing blocked
    the secondary's hashing thread for ever; a symlink to /dev/zero hashed
    without end."""
    path = tmp_path / "b.bin"
    if swap == "fifo":
        os.mkfifo(path)
    elif swap == "folder":
        path.mkdir()
    else:
        os.symlink("/dev/zero", path)
    for hashing in (
        lambda: build_manifest(str(path), "b.bin"),
        lambda: file_sha256(path),
    ):
        with pytest.raises(OSError):
            hashing()
