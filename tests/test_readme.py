"""The README's runnable blocks (fenced ```sh) work when followed literally.

They run in order, as one shell script, in an empty folder with the
installed programs on PATH. Only the well-known ports are swapped for free
ones, so the test never collides with anything else on the machine; the
daemons they start in the background are stopped by the PIDs in their
pidfiles, whatever happened.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from redesdl.localcluster import wait_until

pytestmark = pytest.mark.e2e
README = Path(__file__).parent.parent / "README.md"
BIN = Path(sys.executable).parent
PORTS = ("7000", "7101", "7102")


def runnable_blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", README.read_text(), re.M | re.S)


def free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def stop_by_pidfiles(folder: Path) -> list[int]:
    """Terminate every daemon a pidfile in C{folder} names; the PIDs found."""
    pids = []
    for pidfile in folder.glob("*.pid"):
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            continue
        pids.append(pid)
    return pids


def test_the_readme_blocks_run_as_written(tmp_path: Path) -> None:
    blocks = runnable_blocks()
    assert len(blocks) >= 3, "the README marks its runnable blocks with ```sh"
    script = "set -e\n" + "\n".join(blocks)
    for port, free in zip(PORTS, free_ports(len(PORTS)), strict=True):
        script = re.sub(rf"\b{port}\b", str(free), script)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    try:
        result = subprocess.run(
            ["sh", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "trips/clip.mp4" in result.stdout
        assert (tmp_path / "clip.mp4").stat().st_size == 3_000_000
        # The README's own kill stops them: twistd removes its pidfile on exit.
        wait_until(lambda: not list(tmp_path.glob("*.pid")), 30, "the daemons to stop")
    finally:
        stop_by_pidfiles(tmp_path)
