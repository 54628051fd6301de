"""Local state and stats files: a wrong type anywhere is set aside in one line.

Also the files a daemon opens by name: the cluster secret must be a regular
file, and a served file swapped for a symlink or a FIFO after indexing is
refused.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath

from redesdl.central.stats import fresh_central_stats
from redesdl.daemon import load_security
from redesdl.jsonfile import counter, mapping, read_json, record, sequence, validator
from redesdl.manifest import build_manifest
from redesdl.protocol.auth import SecretFileError, load_secret
from redesdl.secondary.identity import load_identity
from redesdl.secondary.index import DataIndex, open_indexed
from redesdl.secondary.stats import fresh_secondary_stats
from redesdl.stats import SCHEMA_VERSION, StatsFile


def stats_document(**fields: Any) -> str:
    return json.dumps({"schema": SCHEMA_VERSION, "role": "test", **fields})


def open_stats(path: Path, fresh: Callable[[], dict[str, Any]]) -> StatsFile:
    return StatsFile(FilePath(str(path)), "test", fresh, Clock())


TALLY = {"completed": 1, "failed": 0, "bytes": 10}
BAD_STATS = [
    (fresh_central_stats, {"files": {"a.iso": {**TALLY, "completed": "x"}}},
     "field files.\"a.iso\".completed: expected a whole number 0 or more, got str"),
    (fresh_central_stats, {"clients": {"bob": {**TALLY, "bytes": 1.5}}},
     "field clients.bob.bytes"),
    (fresh_central_stats, {"clients": {"bob": {**TALLY, "files": {"a": "x"}}}},
     "field clients.bob.files.a"),
    (fresh_central_stats, {"failures": [{"time": 1, "file": "a", "client": "b"}]},
     "field failures[0].reason: missing"),
    (fresh_central_stats, {"secondaries": {"s": {"registrations": 1,
     "last_registered": "yesterday", "served": {}}}},
     "field secondaries.s.last_registered: expected a number"),
    (fresh_central_stats, {"client_tokens": {"bob": 5}}, "field client_tokens.bob"),
    (fresh_secondary_stats, {"served": {"a": {"chunks": 1, "bytes": 2,
     "clients": {"c": {"chunks": [], "bytes": 1}}}}},
     "field served.a.clients.c.chunks: expected a whole number 0 or more, got list"),
    (fresh_secondary_stats, {"replication": {"copied": 0, "failed": 0, "bytes": 0,
     "recent": [{"time": 1, "file": "a", "ok": "yes", "reason": ""}]}},
     "field replication.recent[0].ok: expected true or false"),
    (fresh_secondary_stats, {"errors": {"file_unreadable": -3}},
     "field errors.file_unreadable"),
    (fresh_secondary_stats, {"starts": "many"}, "field starts"),
    (fresh_secondary_stats, {"uptime_seconds": float("nan")}, "field uptime_seconds"),
]  # fmt: skip


@pytest.mark.parametrize(("fresh", "fields", "said"), BAD_STATS)
def test_a_stats_file_with_a_wrong_type_is_set_aside(
    tmp_path: Path, warnings: list[str], fresh: Any, fields: dict, said: str
) -> None:
    path = tmp_path / "stats.json"
    path.write_text(stats_document(**fields))
    stats = open_stats(path, fresh)
    assert stats.data["starts"] == 1
    assert {k: stats.data[k] for k in fresh()} == fresh()
    assert (tmp_path / "stats.json.corrupt").read_text() == stats_document(**fields)
    assert len(warnings) == 1
    assert said in warnings[0] and "moved to" in warnings[0]
    assert "starting fresh" in warnings[0]


def test_a_good_stats_file_is_kept_and_missing_fields_filled_in(
    tmp_path: Path, warnings: list[str]
) -> None:
    path = tmp_path / "stats.json"
    path.write_text(stats_document(starts=2, uptime_seconds=1.5, saved=None))
    stats = open_stats(path, fresh_central_stats)
    assert stats.data["starts"] == 3 and stats.data["files"] == {}
    assert warnings == [] and not (tmp_path / "stats.json.corrupt").exists()


def test_read_json_names_the_bad_field(tmp_path: Path, warnings: list[str]) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"a": [{"n": 1}, {"n": "\x1b[2J"}]}))
    check = validator(record({"a": sequence(record({"n": counter}))}))
    assert read_json(FilePath(str(path)), "fresh", check=check) == "fresh"
    assert "field a[1].n: expected a whole number 0 or more, got str" in warnings[0]
    path.write_text(json.dumps({"\x1b[2J": {"\x07": 1}}))
    read_json(FilePath(str(path)), None, check=validator(mapping(mapping(flag_like))))
    assert 'field "\\u001b[2J"."\\u0007": expected true or false' in warnings[1]


def flag_like(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"field {where}: expected true or false")


@pytest.mark.parametrize(
    "content",
    [
        '{"id": 5, "boots": 1}',
        '{"id": "0123456789abcdef", "boots": "3"}',
        '{"id": "0123456789abcdef", "boots": -1}',
        '{"id": "\\u001b[2J-id-0123", "boots": 1}',
        '["0123456789abcdef", 1]',
    ],
)
def test_a_bad_identity_is_set_aside_and_a_new_one_made(
    tmp_path: Path, warnings: list[str], content: str
) -> None:
    (tmp_path / "identity.json").write_text(content)
    secondary_id, boot = load_identity(FilePath(str(tmp_path)))
    assert len(secondary_id) == 32 and boot == 1
    assert (tmp_path / "identity.json.corrupt").read_text() == content
    assert len(warnings) == 1 and "identity.json is unusable" in warnings[0]


def test_an_identity_from_before_the_boot_counter_is_kept(tmp_path: Path) -> None:
    (tmp_path / "identity.json").write_text('{"id": "0123456789abcdef"}')
    assert load_identity(FilePath(str(tmp_path))) == ("0123456789abcdef", 1)


def inline(function: Any, *args: Any) -> Any:
    return succeed(function(*args))


def index_cache(tmp_path: Path, files: dict[str, Any]) -> Path:
    cache = tmp_path / "index.json"
    cache.write_text(json.dumps({"version": 1, "files": files}))
    return cache


def make_index(tmp_path: Path) -> DataIndex:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return DataIndex(
        FilePath(str(data)), FilePath(str(tmp_path / "index.json")), inline
    )


def good_cache_entry(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "data" / "a.bin"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"x" * 1000)
    st = os.stat(path)
    manifest = build_manifest(str(path), "a.bin").to_wire()
    return {"stat": [st.st_size, st.st_mtime_ns, st.st_ino], "manifest": manifest}


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda e: {**e, "stat": "x"}, 'files."a.bin".stat: expected 3 whole'),
        (lambda e: {**e, "stat": [1, 2, True]}, "stat: expected 3 whole numbers"),
        (lambda e: {**e, "manifest": []}, 'files."a.bin".manifest'),
        (lambda e: {**e, "manifest": {**e["manifest"], "name": "b.bin"}},
         "it names another file"),
        (lambda e: [e], 'files."a.bin": expected an object'),
    ],
)  # fmt: skip
def test_a_bad_index_cache_is_set_aside_and_the_file_hashed_again(
    tmp_path: Path, warnings: list[str], damage: Any, said: str
) -> None:
    index_cache(tmp_path, {"a.bin": damage(good_cache_entry(tmp_path))})
    index = make_index(tmp_path)
    assert (tmp_path / "index.json.corrupt").exists()
    assert len(warnings) == 1 and said in warnings[0]
    done: list[Any] = []
    index.scan().addCallback(done.append)
    assert [m.name for m in done[0].added] == ["a.bin"]


def test_a_good_index_cache_spares_hashing(tmp_path: Path) -> None:
    index_cache(tmp_path, {"a.bin": good_cache_entry(tmp_path)})
    hashed: list[str] = []

    def counting(function: Any, *args: Any) -> Any:
        if function.__name__ == "build_manifest":
            hashed.append(args[1])
        return succeed(function(*args))

    data = FilePath(str(tmp_path / "data"))
    index = DataIndex(data, FilePath(str(tmp_path / "index.json")), counting)
    index.scan()
    assert list(index.entries) == ["a.bin"] and hashed == []
    assert not (tmp_path / "index.json.corrupt").exists()


def test_an_index_cache_version_must_be_a_whole_number(
    tmp_path: Path, warnings: list[str]
) -> None:
    (tmp_path / "index.json").write_text('{"version": true, "files": {}}')
    make_index(tmp_path)
    assert "field version: expected a whole number" in warnings[0]
    assert (tmp_path / "index.json.corrupt").exists()


def test_an_index_cache_of_another_version_is_ignored_quietly(
    tmp_path: Path, warnings: list[str]
) -> None:
    (tmp_path / "index.json").write_text('{"version": 99, "files": []}')
    make_index(tmp_path)
    assert warnings == [] and not (tmp_path / "index.json.corrupt").exists()


def private_secret(path: Path) -> Path:
    path.write_text("s" * 40)
    os.chmod(path, 0o600)
    return path


def test_the_secret_must_be_a_regular_file(tmp_path: Path) -> None:
    real = private_secret(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    folder = tmp_path / "folder"
    folder.mkdir(mode=0o700)
    expected = {
        link: f"the secret file {link} is a symbolic link; name the file itself",
        fifo: f"the secret file {fifo} is a FIFO, not a regular file",
        folder: f"the secret file {folder} is a folder, not a regular file",
        Path("/dev/null"): "the secret file /dev/null is a character device, not a "
        "regular file",
    }
    for path, line in expected.items():
        with pytest.raises(SecretFileError) as caught:
            load_secret(str(path))
        assert str(caught.value) == line
    assert load_secret(str(real)) is not None


def test_a_secret_file_too_large_is_refused(tmp_path: Path) -> None:
    path = private_secret(tmp_path / "big")
    path.write_text("s" * 4096 + "\n" + "s" * 100)
    with pytest.raises(SecretFileError, match="holds more than 4096 bytes"):
        load_secret(str(path))


def test_the_daemon_exits_with_one_line_on_a_fifo_secret(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    config = {"secret-file": str(fifo), "tls-cert": None, "tls-key": None}
    with pytest.raises(SystemExit) as caught:
        load_security(FakeConfig(config), "redesdl-central")
    assert str(caught.value) == (
        f"redesdl-central: the secret file {fifo} is a FIFO, not a regular file"
    )


class FakeConfig(dict):
    """Options as load_security reads them: every other option unset."""

    def __missing__(self, key: str) -> None:
        return None


def test_open_indexed_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"hello")
    fd = open_indexed(str(path), str(tmp_path))
    try:
        assert os.pread(fd, 5, 0) == b"hello"
    finally:
        os.close(fd)


def test_a_file_swapped_for_a_symlink_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "outside"
    secret.write_bytes(b"not yours")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"served")
    index = DataIndex(FilePath(str(data)), FilePath(str(tmp_path / "i.json")), inline)
    index.scan()
    entry = index.entries["a.bin"]
    os.unlink(data / "a.bin")
    (data / "a.bin").symlink_to(secret)
    for opening in (lambda: open_indexed(entry.path), lambda: index.open(entry)):
        with pytest.raises(OSError) as caught:
            opening()
        assert caught.value.errno == errno.ELOOP


def test_a_folder_swapped_for_a_symlink_is_refused(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "sub").mkdir(parents=True)
    outside.mkdir()
    (data / "sub" / "a.bin").write_bytes(b"served")
    (outside / "a.bin").write_bytes(b"not yours")
    index = DataIndex(FilePath(str(data)), FilePath(str(tmp_path / "i.json")), inline)
    index.scan()
    entry = index.entries["sub/a.bin"]
    os.rename(data / "sub", tmp_path / "moved")
    (data / "sub").symlink_to(outside)
    with pytest.raises(OSError) as caught:
        index.open(entry)
    assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)


def test_a_file_swapped_for_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    os.mkfifo(path)
    with pytest.raises(OSError) as caught:
        open_indexed(str(path), str(tmp_path))
    assert caught.value.errno == errno.EINVAL
    assert "not a regular file" in str(caught.value)
    with pytest.raises(OSError):
        open_indexed(str(tmp_path / ".." / "x"), str(tmp_path))
