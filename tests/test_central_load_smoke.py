"""The central's load generator at a tiny size, so it cannot rot unnoticed.

It runs ``benchmarks/central_load.py`` as a person would, against a real
central it starts itself, and checks what it counted: everyone registered,
every file listed, every page and locate answered, and the central's CPU and
memory read. The figures themselves are not judged here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .benchmarkscript import BENCHMARKS, load_benchmark

BENCHMARK = BENCHMARKS / "central_load.py"


def test_points_are_named_like_the_issue() -> None:
    point = load_benchmark("central_load").Point
    assert point.parse("1000x10kx50") == point(1000, 10000, 50, 2)
    assert point.parse("10x100kx1") == point(10, 100000, 1, 2)
    assert point.parse("100x10k-all") == point(100, 10000, 1, None)
    assert point.parse("100x10k-all").holders == 100
    assert point.parse("1000x10kx50").name == "1000x10kx50"
    assert point.parse("100x10k-all").name == "100x10k-all"
    assert point.parse("100x10kx5-all").name == "100x10kx5-all"
    with pytest.raises(ValueError):
        point.parse("lots")


def test_each_file_lies_on_as_many_secondaries_as_copies() -> None:
    bench = load_benchmark("central_load")
    library = bench.Library(bench.Point(7, 50, 1, 3))
    held: dict[str, int] = {}
    for secondary in range(7):
        for info in library.files_of(secondary):
            held[info.name] = held.get(info.name, 0) + 1
    assert len(held) == 50
    assert set(held.values()) == {3}
    every = bench.Library(bench.Point(4, 300, 1, None))
    assert all(len(every.files_of(s)) == 300 for s in range(4))
    # Every secondary sends the same frames: 256 entries, then the rest.
    assert len(every.batches(0)) == 2
    assert every.batches(0) is every.batches(3)


def run_point(tmp_path: Path, *options: str, timeout: float) -> tuple[str, Any]:
    """Run the load generator as a person would; its table and its one row."""
    result = tmp_path / "rows.json"
    run = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK),
            *options,
            f"--work-dir={tmp_path}",
            f"--json={result}",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr
    [row] = json.loads(result.read_text())
    return run.stdout, row


@pytest.mark.e2e
def test_tiny_point_registers_everyone_and_every_answer_arrives(
    tmp_path: Path,
) -> None:
    table, row = run_point(
        tmp_path,
        "--secondaries=5",
        "--files=200",
        "--clients=2",
        "--duration=3",
        "--heartbeat-interval=0.5",
        "--locate-interval=0.05",
        "--admit-every=3",
        timeout=120,
    )
    assert "5x200x2" in table
    assert row["registered"] == 5
    assert row["register_seconds"] is not None
    assert row["listed"] == 200
    assert row["drops"] == 0 and row["connect_errors"] == 0
    assert row["lost"] == 0
    assert row["errors"] == {
        "list": 0,
        "locate": 0,
        "admit": 0,
        "client": 0,
        "refused": 0,
    }
    assert row["full_listings"] >= 2 and row["short_listings"] == 0
    assert row["pages"] >= row["full_listings"]
    assert row["locates_per_second"] > 0 and row["admits"] >= 1
    assert row["heartbeats"] >= 5
    assert row["central_cpu_seconds"] > 0 and row["central_peak_rss_mib"] > 0
    assert row["central_lag_max"] is not None and row["central_stalls"] is not None
    # The central was stopped and its folder removed.
    assert not list(tmp_path.glob("central-load-*"))


@pytest.mark.e2e
def test_hundreds_of_secondaries_and_tens_of_thousands_of_files(
    tmp_path: Path,
) -> None:
    """A library sized for CI: nobody dropped, every page and answer arrives."""
    _, row = run_point(
        tmp_path,
        "--secondaries=300",
        "--files=30k",
        "--clients=5",
        "--duration=3",
        "--heartbeat-interval=1",
        timeout=240,
    )
    assert row["registered"] == 300 and row["register_seconds"] is not None
    assert row["drops"] == 0 and row["connect_errors"] == 0
    assert row["listed"] == 30_000
    assert row["full_listings"] >= 5 and row["short_listings"] == 0
    assert row["lost"] == 0
    assert set(row["errors"].values()) == {0}
    assert row["heartbeats"] >= 300
