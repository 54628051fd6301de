"""A ``redesdl get`` SIGKILLed again and again loses no chunk it had verified.

Real processes, as tests/test_e2e.py starts them: a central, one secondary
rate-limited so the download lasts a few seconds, and the ``redesdl`` script.
Each run is killed a moment after its first new chunk reached the ``.part``
(0.3 s, 0.8 s, 1.5 s, then 0.5 s: every kill before the first 2 s snapshot);
the next run must say it resumes with the chunks that were on disk, and the
last one, after the state files are deleted, must find them by rechecking.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redesdl.localcluster import LocalCluster, wait_until
from redesdl.manifest import chunk_size_for

pytestmark = pytest.mark.e2e

SIZE = 10 * 1024 * 1024
NAME = "slow.bin"
RESUMING = re.compile(rf"resuming {NAME}: (\d+) chunks")


def good_chunks(part: Path, data: bytes) -> set[int]:
    """The chunks whose bytes in C{part} are right, judged from the source."""
    try:
        on_disk = part.read_bytes()
    except FileNotFoundError:
        return set()
    size = chunk_size_for(len(data))
    return {
        index
        for index, offset in enumerate(range(0, len(data), size))
        if hashlib.sha256(on_disk[offset : offset + size]).digest()
        == hashlib.sha256(data[offset : offset + size]).digest()
    }


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[LocalCluster, list[subprocess.Popen]]]:
    """The cluster, and the list of clients started: all killed at the end."""
    clients: list[subprocess.Popen] = []
    with LocalCluster(
        tmp_path / "cluster", secondaries=1, secondary_args=["--rate-limit", "2M"]
    ) as cluster:
        try:
            yield cluster, clients
        finally:
            for client in clients:
                if client.poll() is None:
                    os.kill(client.pid, signal.SIGKILL)
                client.wait()


def test_kills_under_and_over_a_second_keep_every_verified_chunk(
    started, tmp_path: Path
) -> None:
    cluster, clients = started
    data = os.urandom(SIZE)
    (cluster.data(1) / NAME).write_bytes(data)
    cluster.wait_for_sources(NAME, 1, timeout=60)
    target = tmp_path / NAME
    part = Path(f"{target}.part")

    def run(number: int) -> tuple[subprocess.Popen, Path, Path]:
        out, err = tmp_path / f"out{number}", tmp_path / f"err{number}"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            client = subprocess.Popen(
                cluster.client_argv("get", NAME, "-o", str(target), "--json"),
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=cluster.client_environment(),
            )
        clients.append(client)
        return client, out, err

    def reused(err: Path) -> int:
        found = RESUMING.search(err.read_text())
        return int(found.group(1)) if found else 0

    def under_way(client: subprocess.Popen, before: set[int]) -> None:
        """Wait until this run put a chunk on disk that was not there."""
        wait_until(
            lambda: good_chunks(part, data) - before or client.poll() is not None,
            30,
            "a new chunk on disk",
            interval=0.02,
        )

    kept: list[tuple[float, int, int]] = []
    on_disk: set[int] = set()
    previous_delay = 0.0
    for number, delay in enumerate((0.3, 0.8, 1.5, 0.5)):
        client, _, err = run(number)
        under_way(client, on_disk)
        time.sleep(delay)
        assert client.poll() is None, f"run {number} ended before its kill"
        os.kill(client.pid, signal.SIGKILL)
        client.wait()
        assert "Traceback" not in err.read_text()
        if number:
            # It resumed with what the previous kill left, bar at most the
            # one chunk whose last byte had just landed, not yet verified.
            kept.append((previous_delay, len(on_disk), reused(err)))
            assert len(on_disk) - 1 <= reused(err) <= len(on_disk), err.read_text()
        on_disk, previous_delay = good_chunks(part, data), delay
        assert on_disk, f"nothing on disk after run {number}"

    # The state is lost too: the .part alone is rechecked, every good chunk kept.
    os.unlink(f"{part}.journal")
    os.unlink(f"{part}.json")  # the snapshot of what the last run resumed with
    client, out, err = run(4)
    assert client.wait(timeout=60) == 0, err.read_text()
    assert "has no record of its verified chunks" in err.read_text()
    assert reused(err) == len(on_disk), err.read_text()
    kept.append((previous_delay, len(on_disk), reused(err)))
    report = json.loads(out.read_text().strip().splitlines()[-1])
    assert report["sha256"] == hashlib.sha256(data).hexdigest()
    assert report["bytes_reused"] + report["bytes_fetched"] == SIZE
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert not part.exists() and not Path(f"{part}.journal").exists()
    print("kill after (s), chunks good on disk, chunks reused:", kept)
