"""Prometheus metrics of real daemons, checked against a download we made."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from redesdl.localcluster import LocalCluster, wait_until

pytestmark = pytest.mark.e2e
METRICS = ["--metrics", "tcp:0:interface=127.0.0.1"]


def scrape(log: Path, who: str = "the daemon") -> dict[str, float]:
    """Every sample of the /metrics its log names, by name; fails unless documented."""
    port = wait_until(
        lambda: re.search(r"metrics listening on 127.0.0.1:(\d+)", log.read_text()),
        10,
        f"{who}'s metrics to listen",
    ).group(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        text = page.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, f"{family.name} has no help text"
        for sample in family.samples:
            samples[sample.name] = sample.value
    return samples


def client_timeline(cluster: LocalCluster) -> list[dict[str, Any]]:
    shown = cluster.client("stats", "--json", "--timelines")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["downloads"][-1]["timeline"]


def test_metrics_match_a_download(tmp_path: Path) -> None:
    cluster = LocalCluster(
        tmp_path / "c", secondaries=2, central_args=METRICS, secondary_args=METRICS
    )
    with cluster:
        size = 5 * 1024 * 1024 + 11
        (cluster.data(1) / "m.bin").write_bytes(os.urandom(size))
        cluster.wait_for_sources("m.bin", 2)
        result = cluster.client("get", "m.bin", "-o", str(tmp_path / "m.bin"), "--json")
        assert result.returncode == 0, result.stderr
        sources = json.loads(result.stdout)["sources"]
        assert cluster.central is not None
        central = scrape(cluster.central.log, "the central")
        assert central["redesdl_central_secondaries"] == 2
        assert central["redesdl_central_files"] == 1
        assert central["redesdl_central_downloads_completed_total"] == 1
        assert central["redesdl_central_downloads_failed_total"] == 0
        assert central["redesdl_central_downloaded_bytes_total"] == size
        assert central["redesdl_central_downloads_active"] == 0
        assert central["redesdl_central_downloads_queued"] == 0
        assert central["redesdl_central_replication_backlog_copies"] == 0
        s1, s2 = (scrape(cluster.secondaries[n].log, f"s{n}") for n in (1, 2))
        # s1 held the file and sent s2 its copy; both served the client. The
        # endgame may have fetched some chunks twice: servers count every
        # copy they finished sending, the client only the winner.
        served_s1 = s1["redesdl_secondary_served_bytes_total"]
        served_s2 = s2["redesdl_secondary_served_bytes_total"]
        assert served_s1 >= size + sources.get("s1", 0)
        assert served_s2 >= sources.get("s2", 0)
        duplicated = sum(
            min(256 * 1024, size - event["chunk"] * 256 * 1024)
            for event in client_timeline(cluster)
            if event["event"] == "duplicate"
        )
        assert 0 <= served_s1 + served_s2 - 2 * size <= duplicated
        assert s2["redesdl_secondary_replication_bytes_total"] == size
        assert s1["redesdl_secondary_replication_bytes_total"] == 0
        for secondary in (s1, s2):
            assert secondary["redesdl_secondary_index_files"] == 1
            assert secondary["redesdl_secondary_index_bytes"] == size
            assert secondary["redesdl_secondary_active_transfers"] == 0
            assert secondary["redesdl_secondary_central_links"] == 1
            assert secondary["redesdl_secondary_replication_copying_bytes"] == 0
            assert secondary["redesdl_reactor_lag_max_seconds"] >= 0
        assert central["redesdl_reactor_stalls_total"] >= 0
        chunks = (
            s1["redesdl_secondary_served_chunks_total"]
            + s2["redesdl_secondary_served_chunks_total"]
        )
        assert chunks >= 2 * 21, "a 5 MiB file has 21 chunks of 256 KiB"
        for daemon in (cluster.central, *cluster.secondaries.values()):
            log = daemon.log.read_text()
            # Each port is announced once, by name, not by a class.
            assert "_Quiet" not in log and "Site starting" not in log
            assert log.count("metrics listening on") == 1
            assert "starting on" not in log
