"""The real programs, started as the README says: twistd plugins, redesdl script."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redesdl.localcluster import LocalCluster, wait_until
from redesdl.manifest import file_sha256 as sha256_file

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster") as running:
        yield running


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_list_and_get_with_sha256_equality(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    (cluster.data(1) / "videos").mkdir()
    (cluster.data(1) / "videos" / "clip.mp4").write_bytes(data)
    entry = cluster.wait_for_sources("videos/clip.mp4", 3)
    assert entry["size"] == len(data)
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    result = cluster.client(
        "get", "videos/clip.mp4", "-o", str(tmp_path / "c.mp4"), "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert sha256_file(tmp_path / "c.mp4") == report["sha256"] == entry["sha256"]
    assert report["size"] == len(data) == report["bytes_fetched"]
    assert report["bytes_reused"] == 0 and report["queued_seconds"] == 0
    assert sorted(report["sources"]) == ["s1", "s2", "s3"]
    assert report["path"] == str(tmp_path / "c.mp4")
    human = cluster.client("list")
    assert "videos/clip.mp4" in human.stdout and "3 source(s)" in human.stdout


def test_get_defaults_to_the_base_name_here(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    (cluster.data(2) / "sub").mkdir()
    (cluster.data(2) / "sub" / "here.txt").write_bytes(b"hi\n")
    cluster.wait_for_sources("sub/here.txt", 1)
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [str(BIN / "redesdl"), "get", "sub/here.txt"],
        cwd=work,
        env={
            **cluster.client_environment(),
            "REDESDL_CENTRAL": cluster.central_address,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (work / "here.txt").read_bytes() == b"hi\n"
    assert "saved" in result.stdout


def test_missing_file_is_one_line_and_exit_1(cluster: LocalCluster) -> None:
    result = cluster.client("get", "no/such.file")
    assert result.returncode == 1
    assert "no file named 'no/such.file'" in one_line_error(result)


def test_refuses_to_overwrite_without_force(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    (cluster.data(1) / "f.txt").write_bytes(b"from the cluster")
    cluster.wait_for_sources("f.txt", 1)
    target = tmp_path / "f.txt"
    target.write_bytes(b"mine")
    result = cluster.client("get", "f.txt", "-o", str(target))
    assert result.returncode == 1
    assert "already exists" in one_line_error(result)
    assert target.read_bytes() == b"mine"
    forced = cluster.client("get", "f.txt", "-o", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert target.read_bytes() == b"from the cluster"


def test_usage_error_exits_2() -> None:
    result = subprocess.run(
        [str(BIN / "redesdl"), "get"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_unreachable_central_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run(
        [str(BIN / "redesdl"), "--central", f"127.0.0.1:{port}", "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3
    assert "cannot reach the central" in one_line_error(result)


def test_replication_of_a_file_placed_on_one_secondary(cluster: LocalCluster) -> None:
    data = os.urandom(64 * 1024 * 1024)
    staged = cluster.root / "incoming.bin"
    staged.write_bytes(data)
    os.rename(staged, cluster.data(3) / "movie.bin")
    cluster.wait_for_sources("movie.bin", 3, timeout=120)
    expected = hashlib.sha256(data).hexdigest()
    for number in (1, 2, 3):
        assert sha256_file(cluster.data(number) / "movie.bin") == expected


def test_secondary_killed_mid_download(cluster: LocalCluster, tmp_path: Path) -> None:
    size = 256 * 1024 * 1024
    source = cluster.root / "big.bin"
    with open(source, "wb") as f:
        for _ in range(size // (16 * 1024 * 1024)):
            f.write(os.urandom(16 * 1024 * 1024))
    expected = sha256_file(source)
    for number in (1, 2, 3):
        os.link(source, cluster.data(number) / "big.bin")
    cluster.wait_for_sources("big.bin", 3, timeout=120)
    target = tmp_path / "big.bin"
    get = cluster.start_client("get", "big.bin", "-o", str(target), "--json")
    try:
        wait_until(
            lambda: Path(f"{target}.part").exists() or get.poll() is not None,
            60,
            "the download to start",
            interval=0.002,
        )
        still_running = get.poll() is None
        cluster.secondaries[2].signal(signal.SIGKILL)
        out, err = get.communicate(timeout=120)
    finally:
        if get.poll() is None:
            get.kill()
    assert still_running, "the download ended before the kill"
    assert get.returncode == 0, err
    assert sha256_file(target) == expected
    assert json.loads(out.splitlines()[-1])["size"] == size


def run_daemon_expecting_failure(*args: str) -> str:
    """Run twistd with C{args}; check it fails fast, cleanly; return its last line."""
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "twistd"), "--pidfile=", "-n", *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert time.monotonic() - started < 20
    assert "Traceback" not in output
    return output.strip().splitlines()[-1]


def test_daemon_that_cannot_bind_exits_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        last = run_daemon_expecting_failure(
            "redesdl-central",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--state-dir",
            str(tmp_path / "c"),
        )
    assert "Address already in use" in last


def test_secondary_without_its_data_folder_exits_at_once(tmp_path: Path) -> None:
    last = run_daemon_expecting_failure(
        "redesdl-secondary",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--data",
        str(tmp_path / "missing"),
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert "data folder" in last


def test_bad_options_exit_non_zero(tmp_path: Path) -> None:
    last = run_daemon_expecting_failure(
        "redesdl-central", "--listen", "nonsense:1", "--state-dir", str(tmp_path / "c")
    )
    assert "not a valid endpoint" in last


def test_all_secondaries_gone_is_one_line(cluster: LocalCluster) -> None:
    (cluster.data(1) / "lonely.bin").write_bytes(b"x" * 1000)
    cluster.wait_for_sources("lonely.bin", 3)
    for daemon in cluster.secondaries.values():
        daemon.stop()
    # A name nobody holds leaves the catalog; locate still says no_source.
    wait_until(lambda: cluster.listing() == [], 30, "the central to notice")
    result = cluster.client(
        "get", "lonely.bin", "-o", str(cluster.root / "lonely"), "--retry-for", "1"
    )
    assert result.returncode == 4
    assert "no live secondary holds 'lonely.bin'" in one_line_error(result)
    assert cluster.central is not None and cluster.central.running


def test_no_room_for_the_file_is_one_line_and_leaves_nothing(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    (cluster.data(1) / "big.bin").write_bytes(b"b" * (4 * 1024 * 1024))
    cluster.wait_for_sources("big.bin", 1)

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    out = tmp_path / "out"
    out.mkdir()
    result = subprocess.run(
        [
            str(BIN / "redesdl"),
            "--central",
            cluster.central_address,
            "get",
            "big.bin",
            "-o",
            str(out / "big.bin"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=small_disk,
        env=cluster.client_environment(),
    )
    assert result.returncode == 1
    assert "cannot reserve 4194304 bytes" in one_line_error(result)
    assert list(out.iterdir()) == []


def test_a_secondary_without_room_refuses_the_copy_and_keeps_running(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    (cluster.data(1) / "wide.bin").write_bytes(b"w" * (4 * 1024 * 1024))
    cluster.wait_for_sources("wide.bin", 3)
    data = tmp_path / "cramped"
    data.mkdir()
    log = tmp_path / "cramped.log"

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    cramped = subprocess.Popen(
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
            str(data),
            "--state-dir",
            str(tmp_path / "cramped-state"),
            "--name",
            "cramped",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=small_disk,
    )
    try:
        central_log = cluster.root / "logs" / "central.log"
        wait_until(
            lambda: (
                "cramped could not copy wide.bin: cannot reserve"
                in central_log.read_text()
            ),
            30,
            "the copy to be refused",
        )
        assert cramped.poll() is None
        assert not (data / "wide.bin").exists()
        assert list((data / ".redesdl-incoming").iterdir()) == []
    finally:
        cramped.terminate()
        cramped.wait(10)
