"""The admission queue with real clients: at most N at once, in arrival order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

from redesdl.client.central import connect_central
from redesdl.endpoints import central_endpoint

from .inprocess import Cluster, eventually

BIN = Path(sys.executable).parent


@pytest_twisted.ensureDeferred
async def test_more_gets_than_slots_wait_their_turn(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    admissions: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace", "").endswith("AdmissionQueue") and event.get(
            "log_format", ""
        ).startswith("admitted"):
            admissions.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        await cluster.start_central("--max-active", "1")
        await cluster.start_secondary("s1")
        (cluster.data("s1") / "f.bin").write_bytes(b"f" * 2_000_000)
        await cluster.wait_for_sources("f.bin", 1)
        queue = cluster.central.factory.admission
        holder = await connect_central(
            central_endpoint(reactor, cluster.central_address), "holder"
        )
        await holder.admit("f.bin")
        gets = []
        for name in ("c1", "c2", "c3"):
            gets.append(
                deferToThread(
                    subprocess.run,
                    [
                        str(BIN / "redesdl"),
                        "--central",
                        cluster.central_address,
                        "--name",
                        name,
                        "--stats",
                        str(tmp_path / f"{name}.json"),
                        "get",
                        "f.bin",
                        "-o",
                        str(tmp_path / f"{name}.bin"),
                        "--json",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
            )
            await eventually(
                lambda n=name: n in [t.client for t in queue.waiting],
                f"{name} to wait in the queue",
            )
        assert [t.client for t in queue.waiting] == ["c1", "c2", "c3"]
        await holder.close()
        results = await gatherResults(gets)
    finally:
        globalLogPublisher.removeObserver(observe)
        await cluster.stop()
    for result in results:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.splitlines()[-1])["queued_seconds"] > 0
    assert [e["client"] for e in admissions] == ["holder", "c1", "c2", "c3"]
    assert all(e["active"] <= 1 for e in admissions)
