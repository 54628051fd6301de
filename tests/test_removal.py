"""Removing a file from the cluster (issue 13, point 12), on fakes.

The central's ``remove NAME`` takes the name out of the catalog, orders
every holder to move its copy aside, and remembers the removal so that no
copy comes back: not from a secondary that registers with it, not from
replication. A different content under the name is a new file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.python.filepath import FilePath

from redesdl.central.console import CentralCommands
from redesdl.central.protocol import CentralFactory
from redesdl.secondary.index import REMOVED_FOLDER, IndexChanges

from .secondaryparts import scanned_index
from .test_central import A_OTHER, A, B, client, make_factory, secondary


def run(commands: CentralCommands, line: str) -> list[str]:
    lines: list[str] = []
    commands.execute(line).addCallback(lines.extend)
    return lines


def of_type(replies: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in replies if m["type"] == kind]


def listed(factory: CentralFactory) -> list[str]:
    return [f["name"] for f in client(factory).ask({"type": "list"})["files"]]


def started(tmp_path: Path) -> tuple[CentralFactory, Clock, CentralCommands]:
    clock = Clock()
    factory = make_factory(tmp_path, clock)
    factory.removals.keep_in(FilePath(str(tmp_path / "removed.json")))
    return factory, clock, CentralCommands(factory)


def test_remove_orders_every_holder_to_move_it_aside_and_unlists_it(
    tmp_path: Path,
) -> None:
    factory, clock, console = started(tmp_path)
    s1 = secondary(factory, "s1", [A, B])
    s2 = secondary(factory, "s2", [A, B])
    clock.advance(0)
    s1.replies(), s2.replies()
    [line] = run(console, "remove a.bin")
    assert line.startswith("removed 'a.bin': moved aside on s1, s2")
    withdraw = {"type": "withdraw", "name": "a.bin", "sha256": A["sha256"]}
    assert of_type(s1.replies(), "withdraw") == [withdraw]
    assert of_type(s2.replies(), "withdraw") == [withdraw]
    assert listed(factory) == ["dir/b.bin"]
    located = client(factory).ask({"type": "locate", "name": "a.bin"})
    assert located["code"] == "not_found"
    assert run(console, "files") == [
        "NAME             SIZE  SOURCES  SHA256",
        "dir/b.bin        20 B        2  cccccccccccccccc",
    ]
    assert run(console, "removed") == ["a.bin"]
    assert run(console, "remove nothing.bin") == [
        "no secondary holds 'nothing.bin'; nothing removed"
    ]


def test_a_copy_reported_later_is_moved_aside_and_never_replicated(
    tmp_path: Path,
) -> None:
    factory, clock, console = started(tmp_path)
    secondary(factory, "s1", [A])
    run(console, "remove a.bin")
    late = secondary(factory, "s2", [A, B])
    empty = secondary(factory, "s3", [])
    clock.advance(0)
    assert of_type(late.replies(), "withdraw") == [
        {"type": "withdraw", "name": "a.bin", "sha256": A["sha256"]}
    ]
    orders = [m["file"]["name"] for m in of_type(empty.replies(), "replicate")]
    assert orders == ["dir/b.bin"]
    assert listed(factory) == ["dir/b.bin"]
    assert factory.planner.backlog() == 2  # b.bin for s1 and s3, never a.bin


def test_other_bytes_under_a_removed_name_are_a_new_file(tmp_path: Path) -> None:
    factory, clock, console = started(tmp_path)
    secondary(factory, "s1", [A])
    run(console, "remove a.bin")
    readded = secondary(factory, "s2", [A_OTHER])
    empty = secondary(factory, "s3", [])
    clock.advance(0)
    assert of_type(readded.replies(), "withdraw") == []
    assert listed(factory) == ["a.bin"]
    orders = of_type(empty.replies(), "replicate")
    assert [m["file"]["sha256"] for m in orders] == [A_OTHER["sha256"]]


def test_the_removal_survives_a_restart_until_unremoved(tmp_path: Path) -> None:
    factory, _, console = started(tmp_path)
    secondary(factory, "s1", [A])
    run(console, "remove a.bin")
    saved = json.loads((tmp_path / "removed.json").read_text())
    assert saved == {"schema": 1, "removed": {"a.bin": [A["sha256"]]}}
    assert not list(tmp_path.glob("removed.json.tmp"))

    restarted, _, console = started(tmp_path / ".." / tmp_path.name)
    back = secondary(restarted, "s1", [A])
    assert of_type(back.replies(), "withdraw") != []
    assert listed(restarted) == []
    assert run(console, "unremove a.bin") == [
        "'a.bin' may be served again: put it back in a data folder"
    ]
    secondary(restarted, "s2", [A])
    assert listed(restarted) == ["a.bin"]
    assert json.loads((tmp_path / "removed.json").read_text())["removed"] == {}


def test_a_secondary_moves_a_withdrawn_copy_aside_and_reports_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    (data / "dir").mkdir(parents=True)
    (data / "dir" / "b.bin").write_bytes(b"first")
    index = scanned_index(data, tmp_path / "index.json")
    changes: list[IndexChanges] = []
    index.listeners.append(changes.append)
    sha = index.entries["dir/b.bin"].manifest.sha256
    assert index.withdraw("dir/b.bin", "0" * 64) is None, "another content stays"
    aside = index.withdraw("dir/b.bin", sha)
    assert aside == str(data / REMOVED_FOLDER / "dir" / "b.bin")
    assert (data / REMOVED_FOLDER / "dir" / "b.bin").read_bytes() == b"first"
    assert not (data / "dir" / "b.bin").exists()
    assert changes == [IndexChanges(removed=["dir/b.bin"])]
    # The same name removed again never overwrites what was moved aside.
    (data / "dir" / "b.bin").write_bytes(b"first")
    index.scan()
    index.withdraw("dir/b.bin", sha)
    assert (data / REMOVED_FOLDER / "dir" / "b.bin.1").read_bytes() == b"first"
    index.scan()
    assert "dir/b.bin" not in index.entries
