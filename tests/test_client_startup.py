"""What a one-shot command costs before it does anything: no helper processes,
no garbage collection while it loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
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


def python_output(script: str) -> str:
    """What a fresh interpreter running C{script} prints."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_loading_the_client_starts_no_process() -> None:
    # ctypes.util.find_library("c") used to run ldconfig on every start.
    assert json.loads(python_output(IMPORT_WATCHING_SPAWNS)) == []


COUNTING_COLLECTIONS = """
import gc, json, sys
import redesdl.client.launch
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(1))
sys.argv = ["redesdl", "--version"]
if sys.argv[-1] == "entry point":
    main = redesdl.client.launch.main
else:
    from redesdl.client.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps([len(collections), gc.isenabled()]))
"""


def collections_while_loading(entry: str) -> tuple[int, bool]:
    """Collections run by C{redesdl --version} through C{entry}, and whether
    the collector was on at its end."""
    script = COUNTING_COLLECTIONS.replace('"--version"]', f'"--version", "{entry}"]')
    printed = python_output(script)
    assert printed.startswith("redesdl ")
    count, enabled = json.loads(printed.splitlines()[-1])
    return count, enabled


def test_the_command_loads_without_collecting_and_runs_with_the_collector_on() -> None:
    # The script the installer writes calls redesdl.client.launch:main.
    [script] = entry_points(group="console_scripts", name="redesdl")
    assert script.value == "redesdl.client.launch:main"
    assert collections_while_loading("entry point") == (0, True)
    # Without the pause, loading the same modules collects many times.
    count, enabled = collections_while_loading("cli")
    assert count > 10 and enabled


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_early_writeback_is_available_on_linux(tmp_path: Path) -> None:
    assert writeback._sync_file_range is not None
    with open(tmp_path / "written", "wb+") as f:
        f.write(b"x" * 8192)
        f.flush()
        writeback.start_writeback(f.fileno(), 0, 8192)
        assert os.pread(f.fileno(), 4, 0) == b"xxxx"
