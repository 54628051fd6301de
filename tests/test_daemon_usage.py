"""A bad daemon option is one line naming the option and --help, not the usage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from redesdl.localcluster import wait_until

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def twistd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "twistd"), "--pidfile=", "-n", *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["redesdl-central", "--max-active", "0"],
            "redesdl-central: --max-active must be 1 or more (see --help)",
        ),
        (
            ["redesdl-central", "--no-such-option"],
            "redesdl-central: option --no-such-option not recognized (see --help)",
        ),
        (
            ["redesdl-secondary"],
            "redesdl-secondary: --data FOLDER is required (see --help)",
        ),
        (
            ["redesdl-secondary", "--data", ".", "--rescan-interval", "0"],
            "redesdl-secondary: --rescan-interval must be positive (see --help)",
        ),
        (
            ["redesdl-secondary", "--data", "", "--name", "s1"],
            "redesdl-secondary: --data FOLDER is required (see --help)",
        ),
        (
            ["redesdl-secondary", "--data", ".", "--name", "s\x1b[2J"],
            "redesdl-secondary: --name: a peer name may not contain control or "
            "format characters (see --help)",
        ),
        (
            ["redesdl-central", "--idle-timeout", "nan"],
            "redesdl-central: --idle-timeout must be positive (see --help)",
        ),
        (
            ["redesdl-central", "--slot-idle-timeout", "inf"],
            "redesdl-central: --slot-idle-timeout must be finite (see --help)",
        ),
        (
            ["redesdl-secondary", "--data", ".", "--stats-interval", "nan"],
            "redesdl-secondary: --stats-interval must be positive (see --help)",
        ),
        (
            ["redesdl-secondary", "--data", ".", "--send-buffer", "lots"],
            "redesdl-secondary: --send-buffer: 'lots' is not a size such as 4M "
            "or 16M, nor auto (see --help)",
        ),
    ],
)
def test_a_bad_option_is_one_line(tmp_path: Path, args: list[str], line: str) -> None:
    result = twistd(tmp_path, *args)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [line]


def test_help_still_lists_every_option(tmp_path: Path) -> None:
    result = twistd(tmp_path, "redesdl-central", "--help")
    assert result.returncode == 0
    assert "--max-active" in result.stdout


def test_a_port_is_announced_once_by_the_daemons_own_line(tmp_path: Path) -> None:
    log = tmp_path / "central.log"
    daemon = subprocess.Popen(
        [
            str(BIN / "twistd"),
            "-n",
            "--logfile",
            str(log),
            "redesdl-central",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: log.exists() and "listening on" in log.read_text(),
            30,
            "the central to listen",
        )
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    text = log.read_text()
    assert "redesdl-central listening on 127.0.0.1:" in text
    assert "starting on" not in text


def test_an_identity_that_cannot_be_kept_is_one_line(tmp_path: Path) -> None:
    """A folder left where identity.json.tmp is written was a traceback."""
    (tmp_path / "state" / "identity.json.tmp").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    result = twistd(
        tmp_path,
        "redesdl-secondary",
        "--data",
        "data",
        "--state-dir",
        "state",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--central",
        "127.0.0.1:9",
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = [x for x in result.stderr.splitlines() if "identity" in x]
    assert "cannot keep its identity in" in line and "Is a directory" in line
