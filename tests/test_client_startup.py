"""What a one-shot command costs before it does anything: no helper processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from redesdl.transfer import writeback

IMPORT_WATCHING_SPAWNS = """
import json, sys
spawned = []
def watch(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork"):
        spawned.append([event, repr(args)[:200]])
sys.addaudithook(watch)
import redesdl.client.cli
print(json.dumps(spawned))
"""


def test_loading_the_client_starts_no_process() -> None:
    # ctypes.util.find_library("c") used to run ldconfig on every start.
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WATCHING_SPAWNS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_early_writeback_is_available_on_linux(tmp_path: Path) -> None:
    assert writeback._sync_file_range is not None
    with open(tmp_path / "written", "wb+") as f:
        f.write(b"x" * 8192)
        f.flush()
        writeback.start_writeback(f.fileno(), 0, 8192)
        assert os.pread(f.fileno(), 4, 0) == b"xxxx"
