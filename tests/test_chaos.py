"""Chaos: one download while secondaries are killed, frozen, restarted and lie."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from redesdl.localcluster import LocalCluster, wait_until
from redesdl.manifest import file_sha256

from .clientstats import client_stats
from .damage import rot

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def test_a_download_survives_chaos(tmp_path: Path) -> None:
    with LocalCluster(
        tmp_path / "cluster", secondaries=4, secondary_args=["--rate-limit", "2M"]
    ) as cluster:
        data = os.urandom(24 * 1024 * 1024)
        for number in (1, 2, 3, 4):
            (cluster.data(number) / "movie.bin").write_bytes(data)
        cluster.wait_for_sources("movie.bin", 4, timeout=60)
        target = tmp_path / "movie.bin"
        stats = tmp_path / "client-stats.sqlite"
        get = cluster.start_client(
            "--stats",
            str(stats),
            "get",
            "movie.bin",
            "-o",
            str(target),
            "--json",
            "--progress-timeout",
            "2",
        )
        try:
            wait_until(lambda: Path(f"{target}.part").exists(), 30, "the download")
            schedule = [
                (0.5, lambda: cluster.secondaries[1].signal(signal.SIGKILL)),
                (1.0, lambda: cluster.secondaries[2].signal(signal.SIGSTOP)),
                (1.5, lambda: rot(cluster.data(3) / "movie.bin")),
                (2.0, lambda: cluster.start_secondary(1)),
                (3.5, lambda: cluster.secondaries[2].signal(signal.SIGCONT)),
            ]
            began = time.monotonic()
            for at, action in schedule:
                time.sleep(max(0.0, at - (time.monotonic() - began)))
                assert get.poll() is None, "the download ended before the chaos did"
                action()
            out, err = get.communicate(timeout=120)
        finally:
            if get.poll() is None:
                get.kill()
            cluster.secondaries[2].signal(signal.SIGCONT)
        assert get.returncode == 0, err
        assert file_sha256(target) == hashlib.sha256(data).hexdigest()
        report = json.loads(out.splitlines()[-1])
        assert report["size"] == len(data)
        record = client_stats(stats, timelines=True)["downloads"][-1]
        reasons = {
            e["source"]: e["reason"]
            for e in record["timeline"]
            if e["event"] == "failed"
        }
        assert reasons.get("s3") in (None, "chunk hash mismatch", "connection lost")
        assert reasons, "the chaos should show in the timeline"
