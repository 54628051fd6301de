"""How the real consoles end: the terminal they leave, the downloads they
stop or finish, what they say on the way out.

The client and daemons run as real processes on a pseudo-terminal or a pipe;
every wait has a deadline and every process is stopped by its PID.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from redesdl.localcluster import LocalCluster, free_port, wait_until
from redesdl.manifest import file_sha256

from .clientstats import client_stats
from .pagecache import direct_writes_work_in, resident_share
from .terminal import PtySession

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
INSERT_ON, INSERT_OFF = b"\x1b[4h", b"\x1b[4l"

#: Run after the console, on the same terminal: its settings and whether
#: stdin was left non-blocking, as the next program would find them.
AFTERWARDS = (
    'echo "status=$?"; echo "modes=$(stty -g)"; '
    f"{sys.executable} -c "
    '"import fcntl, os; '
    "print('stdin', 'non-blocking' if fcntl.fcntl(0, fcntl.F_GETFL) & os.O_NONBLOCK "
    "else 'blocking')\""
)


def shell_session(command: str, cwd: Path) -> PtySession:
    """C{command} run by a shell on a fresh terminal, after printing its modes."""
    return PtySession(
        ["sh", "-c", f'echo "modes=$(stty -g)"; {command}; {AFTERWARDS}'], cwd=str(cwd)
    )


def assert_terminal_as_before(session: PtySession) -> None:
    session.read_until("stdin ")
    assert session.wait() == 0
    modes = [line for line in session.text().splitlines() if line.startswith("modes=")]
    assert len(modes) == 2 and modes[0] == modes[1], modes
    assert "stdin blocking" in session.text()
    out = session.output
    assert INSERT_ON in out
    assert out.rindex(INSERT_OFF) > out.rindex(INSERT_ON), "left in insert mode"


@pytest.mark.parametrize(
    "leave", [b"quit\r", b"\x03", b"\x04"], ids=["quit", "ctrl-c", "ctrl-d"]
)
def test_leaving_the_client_console_restores_the_terminal(
    leave: bytes, sessions: list[PtySession], tmp_path: Path
) -> None:
    console = shell_session(
        f"{BIN / 'redesdl'} --central 127.0.0.1:9 --stats {tmp_path / 's.json'}",
        tmp_path,
    )
    sessions.append(console)
    console.read_until("redesdl> ")
    console.type(leave)
    console.read_until("status=0")
    assert f"statistics saved in {tmp_path / 's.json'}" in console.text()
    assert_terminal_as_before(console)


CRASH = """
import os
from twisted.internet import reactor
from redesdl.console import CommandSet, attach_console

reactor.callWhenRunning(attach_console, CommandSet(), "> ", lambda: None, True)
reactor.callLater(0.5, reactor.crash)  # stops without the shutdown triggers
reactor.run()
raise RuntimeError("boom")
"""


def test_a_console_that_dies_of_an_exception_restores_the_terminal(
    sessions: list[PtySession], tmp_path: Path
) -> None:
    (tmp_path / "crash.py").write_text(CRASH)
    console = shell_session(f"{sys.executable} crash.py", tmp_path)
    sessions.append(console)
    console.read_until("RuntimeError: boom")
    assert_terminal_as_before(console)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    running = LocalCluster(tmp_path / "cluster")
    with running:
        (running.data(1) / "clip.bin").write_bytes(b"c" * 3_000_000)
        (running.data(1) / "my clip.bin").write_bytes(b"m" * 1_000_000)
        running.wait_for_sources("clip.bin", 3)
        running.wait_for_sources("my clip.bin", 3)
        yield running


def console_argv(cluster: LocalCluster, stats: Path) -> list[str]:
    return [
        str(BIN / "redesdl"),
        "--central",
        cluster.central_address,
        "--stats",
        str(stats),
    ]


def downloading(console: PtySession) -> bool:
    """Ask the console for its downloads' status; true once one is underway."""
    console.type("status\r")
    screen = console.read_until("clip.bin: ")
    console.output = b""
    last = screen[screen.rindex("clip.bin: ") :].splitlines()[0]
    return not last.startswith(
        ("clip.bin: starting", "clip.bin: locating", "clip.bin: queued")
    )


def test_ctrl_c_asks_before_stopping_a_download_then_records_it(
    cluster: LocalCluster, sessions: list[PtySession], tmp_path: Path
) -> None:
    stats = tmp_path / "s.sqlite"
    target = tmp_path / "clip.bin"
    for daemon in cluster.secondaries.values():
        daemon.signal(signal.SIGSTOP)
    try:
        console = PtySession(
            console_argv(cluster, stats), env=cluster.client_environment()
        )
        sessions.append(console)
        console.read_until("redesdl> ")
        console.type(f"get clip.bin {target}\r")
        wait_until(
            lambda: downloading(console), 30, "the console to say it is downloading"
        )
        console.type(b"\x03")
        console.read_until(
            "1 download running; Ctrl-C again (or 'quit') to stop it: the .part "
            "files are kept and 'get' resumes them"
        )
        assert console.process.poll() is None
        console.type(b"\x03")
        assert console.wait() == 0
    finally:
        for daemon in cluster.secondaries.values():
            daemon.signal(signal.SIGCONT)
    assert "stopped clip.bin; 'get clip.bin' resumes it" in console.text()
    assert f"statistics saved in {stats}" in console.text()
    record = client_stats(stats)["downloads"][-1]
    assert record["result"] == "failed" and record["reason"] == "interrupted"


def run_piped(
    cluster: LocalCluster, stats: Path, lines: list[str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        console_argv(cluster, stats),
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        env=cluster.client_environment(),
        timeout=120,
    )


def test_a_piped_console_finishes_its_downloads_and_says_how_they_ended(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    good = run_piped(
        cluster,
        tmp_path / "s.json",
        [
            f'VIDEO "my clip.bin" {tmp_path}/a.bin',
            f"get clip.bin '{tmp_path}/b c.bin'",
            f"get --direct-io clip.bin {tmp_path}/d.bin",
        ],
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.count("done: saved") == 3
    assert file_sha256(tmp_path / "a.bin") == file_sha256(
        cluster.data(1) / "my clip.bin"
    )
    assert (tmp_path / "b c.bin").stat().st_size == 3_000_000
    # Written around the page cache: not cached until read back below.
    if direct_writes_work_in(tmp_path):
        assert resident_share(tmp_path / "d.bin") < 0.5
    assert file_sha256(tmp_path / "d.bin") == file_sha256(tmp_path / "b c.bin")


def test_a_piped_console_reports_each_failure_and_exits_non_zero(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    (tmp_path / "kept.bin").write_bytes(b"old")
    (tmp_path / "replaced.bin").write_bytes(b"old")
    bad = run_piped(
        cluster,
        tmp_path / "s.json",
        [
            f"get clip.bin {tmp_path}/kept.bin",
            f"get --force clip.bin {tmp_path}/replaced.bin",
            "get 'my clip.bin",
            "VIDEO nosuch",
        ],
    )
    assert bad.returncode != 0
    out = bad.stdout
    assert (
        "get nosuch failed: no file named 'nosuch' on the central (see 'list')" in out
    )
    assert "cannot read that line: No closing quotation" in out
    assert "already exists (use --force to overwrite it)" in out
    assert "done: saved" in out
    assert (tmp_path / "kept.bin").read_bytes() == b"old"
    assert (tmp_path / "replaced.bin").stat().st_size == 3_000_000


def test_daemon_log_lines_go_above_the_prompt_and_leaving_names_the_stats(
    sessions: list[PtySession], tmp_path: Path
) -> None:
    port = free_port()
    central = PtySession(
        [
            str(BIN / "twistd"),
            "--pidfile=",
            "-n",
            "redesdl-central",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--state-dir",
            str(tmp_path / "central"),
        ]
    )
    sessions.append(central)
    central.read_until("central> ")
    central.type("que")
    central.read_until("\x1b[2Kcentral> que")  # redrawn after each key
    with socket.create_connection(("127.0.0.1", port)) as peer:
        peer.sendall(b"not our protocol\n")  # the central logs why it hangs up
        # The prompt drawn again below the log line (a line of its own).
        screen = central.read_until("\ncentral> que")
    logged = screen[screen.index("closing connection") :]
    assert logged.splitlines()[1] == "central> que", "the prompt was not redrawn"
    central.type("ue\r")
    central.read_until("0 of 5 slots in use")
    central.type(b"\x04")
    assert central.wait() == 0
    assert (
        f"statistics saved in {tmp_path / 'central' / 'stats.json'}" in central.text()
    )
    assert central.output.rindex(INSERT_OFF) > central.output.rindex(INSERT_ON)
