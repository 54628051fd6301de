"""Removing a file from a real cluster with the central's console ``remove``.

Before, deleting a file on one secondary got it copied back, and deleting it
everywhere left it listed with 0 sources. Now ``remove NAME`` moves every
copy aside, the file leaves ``list``, and it stays gone: a secondary coming
back with a copy is told to move it aside too. Other bytes under the same
name are served again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from redesdl.localcluster import Daemon, LocalCluster, free_port, wait_until
from redesdl.secondary.index import REMOVED_FOLDER

from .terminal import PtySession

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[LocalCluster, PtySession]]:
    """Two secondaries and a central whose console is on a terminal."""
    running = LocalCluster(tmp_path / "cluster", secondaries=2, secret=True)
    port = free_port()
    central = PtySession(
        [
            str(BIN / "twistd"),
            "--pidfile=",
            "-n",
            f"--logfile={tmp_path / 'central.log'}",
            "redesdl-central",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--state-dir",
            str(running.root / "central"),
            "--secret-file",
            str(running.root / "cluster.secret"),
        ]
    )
    try:
        central.read_until("central> ")
        # The central runs on a terminal, outside the cluster's own start.
        running.central = Daemon("central", [], tmp_path / "central.log")
        running.central.port = port
        for number in (1, 2):
            running.start_secondary(number)
        yield running, central
    finally:
        running.stop()
        central.close()


def names(cluster: LocalCluster) -> list[str]:
    return [entry["name"] for entry in cluster.listing()]


def test_remove_moves_every_copy_aside_and_keeps_it_gone(
    cluster: tuple[LocalCluster, PtySession], tmp_path: Path
) -> None:
    running, central = cluster
    old = os.urandom(200_000)
    (running.data(1) / "old.bin").write_bytes(old)
    (running.data(1) / "keep.bin").write_bytes(b"k" * 1000)
    running.wait_for_sources("old.bin", 2)
    running.wait_for_sources("keep.bin", 2)

    central.type("remove old.bin\r")
    central.read_until("removed 'old.bin': moved aside on s1, s2")
    wait_until(lambda: names(running) == ["keep.bin"], 30, "old.bin to leave list")
    for number in (1, 2):
        data = running.data(number)
        wait_until(
            lambda data=data: (data / REMOVED_FOLDER / "old.bin").exists(),
            30,
            f"s{number} to move old.bin aside",
        )
        assert not (data / "old.bin").exists()
        assert (data / REMOVED_FOLDER / "old.bin").read_bytes() == old
    got = running.client("get", "old.bin", "-o", str(tmp_path / "old.bin"))
    assert got.returncode == 1
    assert "no file named 'old.bin'" in got.stderr

    # A secondary that comes back with a copy is told to move it aside too.
    running.secondaries[2].stop()
    (running.data(2) / "old.bin").write_bytes(old)
    running.start_secondary(2)
    wait_until(
        lambda: (running.data(2) / REMOVED_FOLDER / "old.bin.1").exists(),
        30,
        "s2 to move its returning copy aside",
    )
    assert not (running.data(2) / "old.bin").exists()
    assert not (running.data(1) / "old.bin").exists(), "never copied back"
    assert names(running) == ["keep.bin"]

    # New bytes under the same name are a new file, replicated as any other.
    (running.data(1) / "old.bin").write_bytes(b"new content")
    entry = running.wait_for_sources("old.bin", 2)
    assert entry["size"] == len(b"new content")
    assert (running.data(2) / "old.bin").read_bytes() == b"new content"
