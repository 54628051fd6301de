"""Statistics and the original's commands with real processes: what users see."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from redesdl.localcluster import LocalCluster, wait_until

from .clientstats import client_stats
from .terminal import PtySession
from .test_metrics import scrape

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
FAST_STATS = ["--stats-interval", "0.2"]


def console_central(state: Path, log: Path) -> PtySession:
    """A central in the foreground, its console on a terminal."""
    return PtySession(
        [
            str(BIN / "twistd"),
            "--pidfile=",
            "-n",
            f"--logfile={log}",
            "redesdl-central",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--state-dir",
            str(state),
            *FAST_STATS,
        ]
    )


def read_times(session: PtySession, text: str, times: int) -> None:
    """Read until C{text} has appeared C{times} more times."""
    for _ in range(times):
        session.read_until(text, timeout=60)
        session.output = session.output.replace(text.encode(), b"", 1)


def listening_port(log: Path) -> int:
    found = wait_until(
        lambda: re.search(
            r"redesdl-central listening on 127.0.0.1:(\d+)", log.read_text()
        ),
        30,
        "the central to listen",
    )
    return int(found.group(1))


def test_concurrent_gets_all_land_in_the_statistics(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", secondaries=2) as cluster:
        (cluster.data(1) / "f.bin").write_bytes(os.urandom(600_000))
        cluster.wait_for_sources("f.bin", 2)
        gets = [
            cluster.start_client("get", "f.bin", "-o", str(tmp_path / f"f{n}.bin"))
            for n in range(3)
        ]
        try:
            for get in gets:
                _, err = get.communicate(timeout=120)
                assert get.returncode == 0, err
        finally:
            for get in gets:
                if get.poll() is None:
                    get.kill()
                    get.wait()
        state = Path(cluster.client_environment()["XDG_STATE_HOME"]) / "redesdl"
        document = client_stats(state / "client-stats.sqlite")
    assert document["totals"]["completed"] == 3
    assert sorted(r["path"] for r in document["downloads"]) == [
        str(tmp_path / f"f{n}.bin") for n in range(3)
    ]
    assert document["files"]["f.bin"]["completed"] == 3


def test_inscribir_registers_at_once_and_is_remembered(
    tmp_path: Path, sessions: list[PtySession]
) -> None:
    log = tmp_path / "central.log"
    central = console_central(tmp_path / "central", log)
    sessions.append(central)
    central.read_until("central> ")
    address = f"127.0.0.1:{listening_port(log)}"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "client-state")}
    client_argv = [str(BIN / "redesdl"), "--central", address]
    client = PtySession(client_argv, env=env)
    sessions.append(client)
    client.read_until("redesdl> ")
    client.type("INSCRIBIR ana\r")
    client.read_until("you are now 'ana', registered with the central")
    client.read_until("remembered for the next session")
    central.type("clients\r")
    central.read_until("ana  ")
    client.type(b"\x04")
    assert client.wait() == 0
    again = PtySession(client_argv, env=env)
    sessions.append(again)
    again.read_until("redesdl console as 'ana'")
    again.type(b"\x04")
    assert again.wait() == 0
    central.type(b"\x04")
    assert central.wait() == 0


def test_videos_cliente_lists_files_and_status_shows_paths(
    tmp_path: Path, sessions: list[PtySession]
) -> None:
    with LocalCluster(
        tmp_path / "c",
        secondaries=2,
        central_args=FAST_STATS,
        secondary_args=[*FAST_STATS, "--rate-limit", "2M"],
    ) as cluster:
        (cluster.data(1) / "clip.bin").write_bytes(b"c" * 3_000_000)
        (cluster.data(1) / "song.mp3").write_bytes(b"s" * 1000)
        cluster.wait_for_sources("clip.bin", 2, timeout=60)
        cluster.wait_for_sources("song.mp3", 2)
        client = PtySession(
            [
                str(BIN / "redesdl"),
                "--central",
                cluster.central_address,
                "--name",
                "bea",
            ],
            env=cluster.client_environment(),
        )
        sessions.append(client)
        client.read_until("redesdl> ")
        first, second = tmp_path / "a" / "clip.bin", tmp_path / "b" / "clip.bin"
        first.parent.mkdir()
        second.parent.mkdir()
        client.type(f"get clip.bin {first}\r")
        client.type(f"get clip.bin {second}\r")
        wait_until(
            lambda: Path(f"{first}.part").exists() and Path(f"{second}.part").exists(),
            30,
            "both downloads to start",
        )
        client.type("status\r")
        client.read_until(f"-> {first}")
        client.read_until(f"-> {second}")
        client.type(f"get song.mp3 {tmp_path / 'song.mp3'}\r")
        read_times(client, "done: saved", 3)
        client.type("VIDEOS_CLIENTE\r")
        client.read_until("clip.bin: 2 completed")
        client.read_until("song.mp3: 1 completed")
        client.type(b"\x04")
        assert client.wait() == 0
        stats = cluster.root / "central" / "stats.json"

        def bea_files() -> dict[str, int] | None:
            bea = json.loads(stats.read_text())["clients"].get("bea", {})
            return bea.get("files") if bea.get("completed") == 3 else None

        assert wait_until(bea_files, 10, "the central to count bea's downloads") == {
            "clip.bin": 2,
            "song.mp3": 1,
        }
    central = console_central(cluster.root / "central", tmp_path / "c2.log")
    sessions.append(central)
    central.read_until("central> ")
    central.type("VIDEOS_CLIENTE\r")
    screen = central.read_until("song.mp3: 1")
    assert "bea: 3 completed" in screen and "  clip.bin: 2" in screen
    central.type(b"\x04")
    assert central.wait() == 0


def served_by_secondaries(cluster: LocalCluster) -> int:
    return sum(
        entry["bytes"]
        for number in cluster.secondaries
        for entry in json.loads(
            (cluster.root / f"s{number}" / "stats.json").read_text()
        )["served"].values()
    )


def served_per_central(cluster: LocalCluster) -> int:
    data = json.loads((cluster.root / "central" / "stats.json").read_text())
    return sum(
        entry["bytes"]
        for secondary in data["secondaries"].values()
        for entry in secondary["served"].values()
    )


def test_the_central_counts_what_secondaries_served_once_a_transfer_ends(
    tmp_path: Path,
) -> None:
    with LocalCluster(
        tmp_path / "c",
        secondaries=2,
        central_args=FAST_STATS,
        secondary_args=FAST_STATS,
    ) as cluster:
        (cluster.data(1) / "f.bin").write_bytes(os.urandom(3_000_000))
        cluster.wait_for_sources("f.bin", 2, timeout=60)
        got = cluster.client("get", "f.bin", "-o", str(tmp_path / "f.bin"))
        assert got.returncode == 0, got.stderr
        # Well before the 5 s periodic report: the transfer went quiet.
        ended = time.monotonic()
        wait_until(
            lambda: served_per_central(cluster) == served_by_secondaries(cluster) > 0,
            4,
            "the central's served figures to match the secondaries'",
        )
        assert time.monotonic() - ended < 4
        got = cluster.client("get", "f.bin", "-o", str(tmp_path / "g.bin"), "--force")
        assert got.returncode == 0, got.stderr
        for daemon in cluster.secondaries.values():
            daemon.stop()  # stopping reports what is still unreported
        wait_until(
            lambda: served_per_central(cluster) == served_by_secondaries(cluster),
            10,
            "the central to count what stopped secondaries served",
        )
        assert served_by_secondaries(cluster) >= 6_000_000


def test_a_copy_from_peers_shows_its_progress(
    tmp_path: Path, sessions: list[PtySession]
) -> None:
    size = 6 * 1024 * 1024
    with LocalCluster(
        tmp_path / "c", secondaries=1, secondary_args=["--rate-limit", "1M"]
    ) as cluster:
        (cluster.data(1) / "big.bin").write_bytes(os.urandom(size))
        cluster.wait_for_sources("big.bin", 1, timeout=60)
        log = tmp_path / "s2.log"
        secondary = PtySession(
            [
                str(BIN / "twistd"),
                "--pidfile=",
                "-n",
                f"--logfile={log}",
                "redesdl-secondary",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--central",
                cluster.central_address,
                "--data",
                str(cluster.data(2)),
                "--state-dir",
                str(tmp_path / "s2"),
                "--name",
                "s2",
                "--metrics",
                "tcp:0:interface=127.0.0.1",
            ]
        )
        sessions.append(secondary)
        secondary.read_until("s2> ")
        metrics = wait_until(
            lambda: (
                (m := scrape(log))["redesdl_secondary_replication_copying_bytes"] > 0
                and m
            ),
            30,
            "the copy to have bytes",
        )
        assert metrics["redesdl_secondary_replication_copying_size_bytes"] == size
        assert metrics["redesdl_secondary_replications_active"] == 1
        secondary.type("copies\r")
        screen = secondary.read_until(" from s1")
        progress = r"big\.bin: +\d+% [\d.]+ \w*B of 6\.0 MiB, [\d.]+ \w*B/s, ETA \d+ s"
        assert re.search(progress, screen), screen
        secondary.output = b""
        secondary.type("status\r")
        screen = secondary.read_until(" from s1")
        assert "copying from peers:" in screen and "none" not in screen
        secondary.type(b"\x04")
        assert secondary.wait() == 0
