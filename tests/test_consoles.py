"""The consoles and statistics of the real programs, driven on a pseudo-terminal."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redesdl.localcluster import LocalCluster, wait_until
from redesdl.manifest import file_sha256

from .clientstats import client_stats
from .terminal import PtySession

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    running = LocalCluster(
        tmp_path / "cluster",
        central_args=["--stats-interval", "0.2"],
        secondary_args=["--stats-interval", "0.2"],
    )
    with running:
        (running.data(1) / "clip.bin").write_bytes(b"c" * 3_000_000)
        running.wait_for_sources("clip.bin", 3)
        yield running


def test_client_console_with_the_original_commands(
    cluster: LocalCluster, sessions: list[PtySession], tmp_path: Path
) -> None:
    stats = tmp_path / "client-stats.sqlite"
    console = PtySession(
        [
            str(BIN / "redesdl"),
            "--central",
            cluster.central_address,
            "--stats",
            str(stats),
        ],
        env=cluster.client_environment(),
    )
    sessions.append(console)
    console.read_until("redesdl> ")
    console.type("h\r")
    console.read_until("(also video)")
    console.type("INSCRIBIR ana\r")
    console.read_until("you are now 'ana'")
    console.type("LISTA_VIDEOS\r")
    console.read_until("clip.bin")
    console.type("frobnicate\r")
    console.read_until("unknown command 'frobnicate'")
    console.type("get\r")
    console.read_until("usage: get [--force] [--[no-]direct-io] NAME [PATH]")
    console.type(f"VIDEO clip.bin {tmp_path / 'clip.bin'}\r")
    console.read_until("done: saved")
    console.type("status\r")
    console.read_until("clip.bin: done")
    console.type("stats\r")
    console.read_until("1 downloads completed")
    console.type(b"\x04")
    assert console.wait() == 0
    assert file_sha256(tmp_path / "clip.bin") == file_sha256(
        cluster.data(1) / "clip.bin"
    )
    record = client_stats(stats)["downloads"][-1]
    assert record["file"] == "clip.bin" and record["result"] == "ok"
    assert sum(record["sources"].values()) == 3_000_000
    central_stats = cluster.root / "central" / "stats.json"
    wait_until(
        lambda: "ana" in json.loads(central_stats.read_text())["clients"],
        10,
        "the central to record ana",
    )


def test_typing_is_not_corrupted_by_a_finishing_download(
    cluster: LocalCluster, sessions: list[PtySession], tmp_path: Path
) -> None:
    console = PtySession(
        [
            str(BIN / "redesdl"),
            "--central",
            cluster.central_address,
            "--stats",
            str(tmp_path / "s.sqlite"),
        ],
        env=cluster.client_environment(),
    )
    sessions.append(console)
    console.read_until("redesdl> ")
    console.type(f"get clip.bin {tmp_path / 'x.bin'}\r")
    console.type("sta")
    screen = console.read_until("done: saved")
    console.read_until("redesdl> sta")
    console.type("tus\r")
    console.read_until("clip.bin: done")
    assert screen.count("Traceback") == 0
    console.type(b"\x03")
    assert console.wait() == 0


def copy_stats(state: Path, into: Path, mention: str) -> Path:
    """A new state folder holding C{state}'s statistics once they mention C{mention}."""
    stats = state / "stats.json"
    wait_until(
        lambda: mention in stats.read_text(), 10, f"{stats} to mention {mention}"
    )
    into.mkdir()
    (into / "stats.json").write_text(stats.read_text())
    return into


def test_central_and_secondary_consoles(
    cluster: LocalCluster, sessions: list[PtySession], tmp_path: Path
) -> None:
    result = cluster.client(
        "--name", "bob", "get", "clip.bin", "-o", str(tmp_path / "c.bin"), "--json"
    )
    assert result.returncode == 0, result.stderr
    # Which secondaries served bob depends on timing: reopen one that did,
    # once its saved statistics say so.
    served = sorted(
        name for name, count in json.loads(result.stdout)["sources"].items() if count
    )
    number = int(served[0].removeprefix("s"))
    wait_until(
        lambda: "bob" in (cluster.root / f"s{number}" / "stats.json").read_text(),
        10,
        f"s{number}'s statistics to mention bob",
    )
    central = PtySession(
        [
            str(BIN / "twistd"),
            "--pidfile=",
            "-n",
            f"--logfile={tmp_path / 'c.log'}",
            "redesdl-central",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--state-dir",
            str(cluster.root / "central"),
            "--stats-interval",
            "0.2",
        ]
    )
    sessions.append(central)
    central.read_until("central> ")
    central.type("help\r")
    central.read_until("videos_cliente")
    central.type("NUMERO_DESCARGAS_VIDEO\r")
    central.read_until("clip.bin: 1")
    central.type("Videos_Cliente\r")
    central.read_until("bob: 1")
    central.type("queue\r")
    central.read_until("0 of 5 slots in use")
    central.type(b"\x04")
    assert central.wait() == 0
    secondary = PtySession(
        [
            str(BIN / "twistd"),
            "--pidfile=",
            "-n",
            f"--logfile={tmp_path / 's.log'}",
            "redesdl-secondary",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--central",
            cluster.central_address,
            "--data",
            str(cluster.data(number)),
            "--state-dir",
            str(cluster.root / f"s{number}"),
            "--name",
            "s1-again",
        ]
    )
    sessions.append(secondary)
    secondary.read_until("s1-again> ")
    wait_until(
        lambda: "registered with the central" in (tmp_path / "s.log").read_text(),
        30,
        "s1-again to register",
    )
    secondary.type("VIDEOS_DESCARGADOS\r")
    secondary.read_until("client(s)")
    secondary.type("files\r")
    secondary.read_until("clip.bin  3000000 bytes")
    secondary.type("status\r")
    secondary.read_until("s1-again: registered with the central")
    secondary.type("videos_descargando\r")
    secondary.read_until("nothing is being served")
    secondary.type("rescan\r")
    secondary.read_until("0 added or changed, 0 removed")
    secondary.type(b"\x04")
    assert secondary.wait() == 0


def test_daemon_stats_survive_sigkill(cluster: LocalCluster, tmp_path: Path) -> None:
    result = cluster.client(
        "--name", "carla", "get", "clip.bin", "-o", str(tmp_path / "c.bin")
    )
    assert result.returncode == 0, result.stderr
    stats = cluster.root / "central" / "stats.json"

    def recorded() -> bool:
        data = json.loads(stats.read_text())
        return data["files"].get("clip.bin", {}).get("completed") == 1

    wait_until(recorded, 10, "the download in the central's statistics")
    assert cluster.central is not None
    cluster.central.signal(signal.SIGKILL)
    cluster.central.process.wait()
    data = json.loads(stats.read_text())
    assert data["clients"]["carla"]["completed"] == 1
    assert not (cluster.root / "central" / "stats.json.tmp").exists()
    restarted = cluster.start_central()
    assert restarted.port
    cluster.central.stop()
    again = json.loads(stats.read_text())
    assert again["starts"] == 2
    assert again["clients"]["carla"]["completed"] == 1


def test_get_shows_progress_only_on_a_terminal(
    cluster: LocalCluster, sessions: list[PtySession], tmp_path: Path
) -> None:
    base = [
        str(BIN / "redesdl"),
        "--central",
        cluster.central_address,
        "--stats",
        str(tmp_path / "s.sqlite"),
        "get",
        "clip.bin",
        "-o",
    ]
    env = cluster.client_environment()
    shown = PtySession([*base, str(tmp_path / "a.bin")], env=env)
    sessions.append(shown)
    shown.read_until("saved")
    assert shown.wait() == 0
    assert "clip.bin: " in shown.text()
    quiet = PtySession([*base, str(tmp_path / "b.bin"), "--quiet"], env=env)
    sessions.append(quiet)
    assert quiet.wait() == 0
    assert "clip.bin: " not in quiet.text() and "saved" not in quiet.text()
    piped = cluster.client("get", "clip.bin", "-o", str(tmp_path / "c.bin"))
    assert piped.returncode == 0 and piped.stderr == ""


def test_interrupted_get_exits_130_and_is_recorded(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    for daemon in cluster.secondaries.values():
        daemon.signal(signal.SIGSTOP)
    stats = tmp_path / "s.sqlite"
    central_log = cluster.root / "logs" / "central.log"
    # Earlier tests of this module were admitted too: only this client counts.
    before = central_log.stat().st_size
    get = cluster.start_client(
        "--stats", str(stats), "-v", "get", "clip.bin", "-o", str(tmp_path / "clip.bin")
    )
    try:

        def admitted() -> bool:
            with open(central_log, "rb") as log:
                start = before if log.seek(0, os.SEEK_END) >= before else 0
                log.seek(start)
                return b"admitted" in log.read()

        wait_until(admitted, 30, "the client to be admitted")
        get.send_signal(signal.SIGINT)
        _, err = get.communicate(timeout=30)
    finally:
        if get.poll() is None:
            get.kill()
        for daemon in cluster.secondaries.values():
            daemon.signal(signal.SIGCONT)
    assert get.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    record = client_stats(stats)["downloads"][-1]
    assert record["result"] == "failed" and record["reason"] == "interrupted"
    assert not (tmp_path / "clip.bin").exists()


def test_a_frozen_secondary_stops_being_offered_and_comes_back(tmp_path: Path) -> None:
    fast = ["--heartbeat-interval", "0.3", "--heartbeat-timeout", "1.5"]
    with LocalCluster(
        tmp_path / "cluster",
        central_args=["--heartbeat-timeout", "1.5"],
        secondary_args=fast,
    ) as running:
        (running.data(1) / "f.bin").write_bytes(b"f" * 1000)
        running.wait_for_sources("f.bin", 3)
        frozen = running.secondaries[2]
        frozen.signal(signal.SIGSTOP)
        try:
            wait_until(
                lambda: running.listing()[0]["sources"] == 2,
                20,
                "the central to stop offering the frozen secondary",
            )
            located = running.client(
                "get", "f.bin", "-o", str(tmp_path / "f.bin"), "--json"
            )
            assert located.returncode == 0, located.stderr
            assert "s2" not in json.loads(located.stdout.splitlines()[-1])["sources"]
        finally:
            frozen.signal(signal.SIGCONT)
        running.wait_for_sources("f.bin", 3, timeout=30)


def test_central_restart_loses_nothing(tmp_path: Path) -> None:
    with LocalCluster(
        tmp_path / "cluster", secondary_args=["--rate-limit", "4M"]
    ) as running:
        data = os.urandom(12 * 1024 * 1024)
        (running.data(1) / "big.bin").write_bytes(data)
        (running.data(2) / "small.txt").write_bytes(b"small")
        running.wait_for_sources("big.bin", 3, timeout=60)
        running.wait_for_sources("small.txt", 3)
        target = tmp_path / "big.bin"
        get = running.start_client("get", "big.bin", "-o", str(target), "--json")
        try:
            wait_until(lambda: Path(f"{target}.part").exists(), 30, "the download")
            assert running.central is not None
            still_running = get.poll() is None
            running.central.signal(signal.SIGKILL)
            running.central.process.wait()
            _, err = get.communicate(timeout=60)
        finally:
            if get.poll() is None:
                get.kill()
        assert still_running, "the download ended before the central died"
        assert get.returncode == 0, err
        assert file_sha256(target) == hashlib.sha256(data).hexdigest()
        outage = running.client("list")
        assert outage.returncode == 3
        assert "cannot reach the central" in outage.stderr
        running.start_central()
        started = time.monotonic()
        running.wait_for_sources("big.bin", 3, timeout=30)
        running.wait_for_sources("small.txt", 3, timeout=30)
        assert time.monotonic() - started < 10


def test_get_killed_midway_resumes_where_it_stopped(tmp_path: Path) -> None:
    with LocalCluster(
        tmp_path / "cluster", secondary_args=["--rate-limit", "1M"]
    ) as running:
        data = os.urandom(10 * 1024 * 1024)
        for number in (1, 2, 3):
            (running.data(number) / "slow.bin").write_bytes(data)
        running.wait_for_sources("slow.bin", 3, timeout=60)
        target = tmp_path / "slow.bin"
        args = ("get", "slow.bin", "-o", str(target), "--json")
        first = running.start_client(*args)
        try:
            wait_until(
                lambda: Path(f"{target}.part.json").exists(),
                30,
                "the first progress record",
            )
            first.kill()
            first.wait()
        finally:
            if first.poll() is None:
                first.kill()
        second = running.client(*args)
        assert second.returncode == 0, second.stderr
        report = json.loads(second.stdout.splitlines()[-1])
        assert report["bytes_reused"] > 0
        assert report["bytes_reused"] + report["bytes_fetched"] == len(data)
        assert "resuming slow.bin" in second.stderr
        assert file_sha256(target) == hashlib.sha256(data).hexdigest()
