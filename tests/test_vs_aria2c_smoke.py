"""The redesdl/aria2c/curl benchmark at a tiny size, so it cannot rot unnoticed.

It runs ``benchmarks/vs_aria2c.py`` as a person would (8 MiB, one round, no
warm-up, with ``--secure`` and ``--write-ways`` so that every row is printed)
and checks that it exits 0, prints every row of both tables and every
target, and leaves neither processes nor files behind. The figures
themselves are not judged: at 8 MiB they are mostly process start-up.

It needs aria2c, nginx and curl: when they are missing it installs them with
apt-get as the benchmark would (CI runs as root on Debian), and skips, saying
why, when that is not possible.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .benchmarkscript import BENCHMARKS, load_benchmark

BENCHMARK = BENCHMARKS / "vs_aria2c.py"

ROWS = [
    "file: 8 MiB, a separate copy each,",
    "tool ",
    "redesdl ",
    "redesdl-tls ",
    "redesdl-dio ",
    "redesdl-cached ",
    "aria2c ",
    "curl ",
    "ratio redesdl/aria2c: wall ",
    "ratio redesdl/curl: wall ",
    "  same-round ratios redesdl/aria2c (median): wall ",
    "redesdl secondaries: ",
    "redesdl peak RSS: ",
    "TLS throughput: ",
    "replication: secondary 3 copies 8 MiB",
    "copy ",
    "replication ",
]


def require_tools(bench: Any) -> None:
    """Install aria2c, nginx and curl if possible; skip if they cannot be."""
    missing = [tool for tool in bench.TOOLS if bench.find_tool(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"{', '.join(missing)} not installed, and installing needs root "
            f"and apt-get (apt-get install aria2 nginx-light curl)"
        )
    try:
        bench.ensure_tools()
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"could not apt-get install {', '.join(missing)}: {e}")


def run_benchmark(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run it; on a timeout, SIGTERM it so that it stops what it started."""
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        pytest.fail(f"the benchmark took over {timeout:.0f}s:\n{stdout}\n{stderr}")
    return process.returncode, stdout, stderr


@pytest.mark.e2e
def test_tiny_run_prints_every_row_and_cleans_up(tmp_path: Path) -> None:
    require_tools(load_benchmark("vs_aria2c"))
    returncode, stdout, stderr = run_benchmark(
        [
            sys.executable,
            str(BENCHMARK),
            "--size-mib=8",
            "--runs=1",
            "--warmup=0",
            "--secure",
            "--write-ways",
            f"--work-dir={tmp_path}",
        ],
        timeout=600,
    )
    assert returncode == 0, f"{stdout}\n{stderr}"
    lines = stdout.splitlines()
    for row in ROWS:
        assert any(line.startswith(row) for line in lines), f"no {row!r}:\n{stdout}"
    targets = [line for line in lines if "(target " in line]
    assert len(targets) == 5, stdout
    assert all("PASS" in line or "FAIL" in line for line in targets)
    # Its sources, clusters and nginx roots were removed with their processes.
    assert list(tmp_path.iterdir()) == []
    assert processes_mentioning(str(tmp_path)) == []


def processes_mentioning(text: str) -> list[str]:
    """The command lines of live processes that contain C{text}."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if text in argv:
            found.append(argv)
    return found
