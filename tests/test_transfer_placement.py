"""Placing a replicated copy: never outside the data folder, even for a moment."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from redesdl.manifest import Manifest
from redesdl.transfer.errors import IntegrityError
from redesdl.transfer.placement import check_copy, place_inside
from redesdl.transfer.store import EMPTY_SHA256


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def staged(tmp_path: Path, content: bytes = b"copy") -> str:
    path = tmp_path / "staged"
    path.write_bytes(content)
    return str(path)


def test_a_copy_lands_at_its_name_creating_its_folders(data, tmp_path) -> None:
    placed = place_inside(str(data), "a/b/c.bin", staged(tmp_path))
    assert placed == str(data / "a/b/c.bin")
    assert (data / "a/b/c.bin").read_bytes() == b"copy"
    assert not (tmp_path / "staged").exists()


def test_an_existing_file_is_never_replaced(data, tmp_path) -> None:
    (data / "c.bin").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        place_inside(str(data), "c.bin", staged(tmp_path))
    assert (data / "c.bin").read_bytes() == b"mine"


def test_a_symlinked_folder_creates_nothing_outside(data, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, data / "a")
    with pytest.raises(OSError) as raised:
        place_inside(str(data), "a/deeper/c.bin", staged(tmp_path))
    assert raised.value.errno == errno.ELOOP
    assert list(outside.iterdir()) == []
    assert (tmp_path / "staged").exists()


def test_a_file_where_a_folder_should_be_is_refused(data, tmp_path) -> None:
    (data / "a").write_bytes(b"file")
    with pytest.raises(NotADirectoryError):
        place_inside(str(data), "a/c.bin", staged(tmp_path))


def test_only_a_regular_file_of_the_right_size_is_adopted(tmp_path) -> None:
    manifest = Manifest("c.bin", 4, "0" * 64, ("0" * 64,))
    check_copy(staged(tmp_path), manifest)
    with pytest.raises(IntegrityError):
        check_copy(staged(tmp_path, b"longer"), manifest)
    os.symlink(tmp_path / "staged", tmp_path / "link")
    with pytest.raises(IntegrityError):
        check_copy(str(tmp_path / "link"), manifest)
    with pytest.raises(IntegrityError):
        check_copy(staged(tmp_path, b""), Manifest("e", 0, "1" * 64, ()))
    check_copy(staged(tmp_path, b""), Manifest("e", 0, EMPTY_SHA256, ()))
