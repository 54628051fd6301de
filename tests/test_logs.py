"""The operator's log: state changes as events, readable as text or JSON lines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from redesdl.localcluster import Daemon, wait_until

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def events(path: Path) -> list[dict[str, Any]]:
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_carry_every_state_change(tmp_path: Path) -> None:
    log = tmp_path / "central.jsonl"
    central = subprocess.Popen(
        [
            str(BIN / "twistd"),
            "--logger",
            "redesdl.jsonlog.observer",
            "--pidfile=",
            "-n",
            "redesdl-central",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--state-dir",
            str(tmp_path / "central"),
            "--max-active",
            "1",
        ],
        env={**os.environ, "REDESDL_JSON_LOG": str(log)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    secondary = None
    try:

        def port() -> str | None:
            for event in events(log):
                found = re.search(r"central listening on [^:]+:(\d+)", event["text"])
                if found:
                    return found.group(1)
            return None

        address = f"127.0.0.1:{wait_until(port, 30, 'the central to listen')}"
        data = tmp_path / "data"
        data.mkdir()
        (data / "a.bin").write_bytes(os.urandom(5 * 1024 * 1024))
        secondary = Daemon(
            "s1",
            [
                str(BIN / "twistd"),
                "--pidfile=",
                "-n",
                "redesdl-secondary",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--central",
                address,
                "--data",
                str(data),
                "--state-dir",
                str(tmp_path / "s1"),
                "--name",
                "s1",
            ],
            tmp_path / "s1.log",
        )
        secondary.start()
        wait_until(
            lambda: any(e.get("name") == "s1" for e in events(log)),
            30,
            "the registration event",
        )
        get = subprocess.run(
            [str(BIN / "redesdl"), "--central", address, "--name", "ana", "get",
             "a.bin", "-o", str(tmp_path / "a.bin"), "--retry-for", "10"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert get.returncode == 0, get.stderr
        missing = subprocess.run(
            [str(BIN / "redesdl"), "--central", address, "--name", "ana", "get",
             "a.bin", "-o", str(tmp_path / "a.bin")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        # Already there: refused before the central is even asked.
        assert missing.returncode == 1 and "exists" in missing.stderr
        done = wait_until(
            lambda: (
                [e for e in events(log) if e.get("client") == "ana"][1:]
                and [e for e in events(log) if e.get("client") == "ana"]
            ),
            30,
            "the download's events",
        )
    finally:
        central.terminate()
        central.wait(30)
        if secondary is not None:
            secondary.stop()
    texts = [e["text"] for e in events(log)]
    assert any("RUNNING OPEN" in t for t in texts)
    registered = [e for e in events(log) if e.get("name") == "s1"]
    assert registered[0]["log_level"]["name"] == "info"
    assert "secondary s1 registered at 127.0.0.1:" in registered[0]["text"]
    assert [e["text"].split(" after")[0].split(":")[0] for e in done] == [
        "admitted ana for a.bin",
        "ana completed a.bin (5242880 bytes fetched)",
    ]
    assert done[1]["ok"] is True and done[1]["file"] == "a.bin"
    assert not [t for t in texts if "chunk" in t], "no line per chunk"
