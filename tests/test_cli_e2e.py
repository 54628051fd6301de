"""``redesdl get`` and ``list`` as a person runs them: real processes, a pty."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redesdl.localcluster import LocalCluster, wait_until
from tests.pagecache import direct_writes_work_in, resident_share
from tests.terminal import PtySession

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
CLIP = "videos/a_clip_with_a_rather_long_name_2024.mp4"
DATA = os.urandom(12 * 1024 * 1024 + 7)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    # Slow secondaries, so a download lasts long enough to watch and interrupt.
    root = tmp_path_factory.mktemp("cli")
    with LocalCluster(root / "c", secondary_args=["--rate-limit", "3M"]) as running:
        staged = root / "staged"
        staged.write_bytes(DATA)
        (running.data(1) / "videos").mkdir()
        (running.data(1) / "videos" / "small.txt").write_bytes(b"small\n")
        os.rename(staged, running.data(1) / CLIP)
        running.wait_for_sources(CLIP, 3, timeout=120)
        yield running


def set_size(session: PtySession, columns: int, rows: int = 24) -> None:
    winsize = struct.pack("HHHH", rows, columns, 0, 0)
    fcntl.ioctl(session._master, termios.TIOCSWINSZ, winsize)


def on_pty(cluster: LocalCluster, *args: str, columns: int = 80) -> PtySession:
    session = PtySession(
        cluster.client_argv(*args), env=cluster.client_environment(), cwd=cluster.root
    )
    set_size(session, columns)
    return session


def read_until_percent(session: PtySession, percent: int, timeout: float = 30) -> None:
    """Read until the progress line shows at least C{percent}."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([session._master], [], [], 0.2)
        if ready:
            session.output += os.read(session._master, 65536)
        shown = re.findall(r": +(\d+)% ", session.text())
        if shown and int(shown[-1]) >= percent:
            return
    raise AssertionError(f"never reached {percent}%:\n{session.text()[-2000:]}")


def redraws(text: str) -> list[str]:
    return [part for part in text.split("\r\x1b[K") if "ETA" in part]


def test_progress_fits_the_terminal_and_every_other_line_starts_clean(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    session = on_pty(cluster, "-v", "get", CLIP, "-o", str(tmp_path / "a.mp4"))
    try:
        session.read_until("ETA")
        set_size(session, 40)
        session.process.send_signal(signal.SIGWINCH)
        assert session.wait(60) == 0
    finally:
        session.close()
    text = session.text()
    shown = redraws(text)
    assert shown and all(len(part.split("\r")[0]) < 80 for part in shown)
    # The window shrank to 40 columns: the last redraws followed it.
    assert len(shown[-1].split("\r")[0]) < 40
    # The summary never shares a line with the progress.
    (summary,) = [line for line in text.split("\r\n") if "saved" in line]
    assert summary.split("\r\x1b[K")[-1].startswith("saved ")
    assert "Main loop terminated" not in text and "Traceback" not in text


def test_ctrl_c_says_where_the_data_is_and_the_same_command_resumes_to_100(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    target = tmp_path / "b.mp4"
    session = on_pty(cluster, "get", CLIP, "-o", str(target))
    try:
        read_until_percent(session, 20)
        os.killpg(session.process.pid, signal.SIGINT)
        assert session.wait(30) == 130
    finally:
        session.close()
    text = session.text()
    assert "Exception ignored" not in text and "GeneratorExit" not in text
    last = text.split("\r\x1b[K")[-1].strip()
    assert last == (
        f"redesdl: interrupted; the data so far is kept in {target}.part: "
        "run the same command again to resume"
    )
    again = on_pty(cluster, "get", CLIP, "-o", str(target))
    try:
        assert again.wait(60) == 0
    finally:
        again.close()
    resumed = again.text()
    assert "100%" in resumed or "reused" in resumed
    assert "reused from an earlier attempt" in resumed
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(DATA).digest()


def test_mistakes_of_our_own_come_before_asking_the_central(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{s.getsockname()[1]}"
    existing = tmp_path / "x.mp4"
    existing.write_bytes(b"mine")
    for target, expected in (
        (existing, f"{existing} already exists (use --force to overwrite it)"),
        (tmp_path / "no" / "x.mp4", f"the folder {tmp_path / 'no'} does not exist"),
    ):
        started = time.monotonic()
        argv = ["get", "x.mp4", "-o", str(target), "--central", nobody]
        result = subprocess.run(
            [str(BIN / "redesdl"), *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert time.monotonic() - started < 10
        assert (result.returncode, result.stderr) == (1, f"redesdl: {expected}\n")


@pytest.mark.parametrize("central", ["not an address", "tls:127.0.0.1:7000"])
def test_a_bad_central_is_a_usage_error_in_one_line(central: str) -> None:
    result = subprocess.run(
        [str(BIN / "redesdl"), "list", "--central", central],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"redesdl: --central: {central!r} is neither HOST:PORT nor an endpoint "
        "string (those name their arguments: tcp:host=H:port=P)\n"
    )


@pytest.mark.parametrize(
    ("argv", "option", "said"),
    [
        (["get", "x", "--progress-timeout", "-5"], "--progress-timeout", "more than 0"),
        (["get", "x", "--progress-timeout=nan"], "--progress-timeout", "more than 0"),
        (["get", "x", "--retry-for", "inf"], "--retry-for", "0 or more"),
        (["--timeout", "-1", "list"], "--timeout", "more than 0"),
        (["--timeout", "soon", "list"], "--timeout", "not a number"),
        (["stats", "-n", "-3"], "-n/--last", "0 or more"),
    ],
)
def test_a_bad_number_is_a_usage_error_naming_the_option(
    argv: list[str], option: str, said: str
) -> None:
    """Once a traceback and a hang (-5, nan), or an AssertionError (-1)."""
    result = subprocess.run(
        [str(BIN / "redesdl"), "--central", "127.0.0.1:9", *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert f"error: argument {option}: " in last and said in last
    assert "Traceback" not in result.stderr


def help_of(*command: str, **env: str) -> str:
    """What C{redesdl COMMAND --help} prints; it must succeed, silently."""
    result = subprocess.run(
        [str(BIN / "redesdl"), *command, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"usage: {' '.join(['redesdl', *command])} ")
    return result.stdout


@pytest.mark.parametrize("command", [[], ["list"], ["get"]])
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    # A state folder with a % in its name appears in the help's defaults.
    state = tmp_path / "100% mine"
    shown = help_of(*command, XDG_STATE_HOME=str(state))
    assert "--central CENTRAL" in shown
    # argparse wraps long paths anywhere: compare without white space.
    unwrapped = "".join(shown.split())
    assert "[default:$REDESDL_CENTRALor127.0.0.1:7000]" in unwrapped
    assert "".join(f"{state}/redesdl/client-stats.sqlite".split()) in unwrapped


def test_the_stats_command_has_help() -> None:
    assert "list the last N downloads [default: 10]" in help_of("stats")


def test_the_stats_command_needs_no_central(tmp_path: Path) -> None:
    """It read the central setting, and refused a bad one, all the same."""
    result = subprocess.run(
        [str(BIN / "redesdl"), "--central", "not an address", "stats", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["downloads"] == []


def test_dash_o_dash_streams_the_verified_file_to_stdout(
    cluster: LocalCluster,
) -> None:
    result = subprocess.run(
        cluster.client_argv("get", CLIP, "-o", "-"),
        capture_output=True,
        timeout=120,
        env=cluster.client_environment(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == DATA
    assert result.stderr.decode().startswith("wrote it to stdout (12.0 MiB")


def test_dash_o_dash_into_a_full_stdout_says_so(cluster: LocalCluster) -> None:
    """It said 'interrupted; the data is kept in' a scratch .part already gone."""
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            cluster.client_argv("get", CLIP, "-o", "-"),
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=120,
            env=cluster.client_environment(),
        )
    assert result.returncode == 1
    assert result.stderr.decode() == (
        "redesdl: cannot write to stdout: [Errno 28] No space left on device\n"
    )


def test_quiet_prints_nothing_but_errors(cluster: LocalCluster, tmp_path: Path) -> None:
    ok = cluster.client("get", "videos/small.txt", "-o", str(tmp_path), "-q")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")
    again = cluster.client("get", "videos/small.txt", "-o", str(tmp_path), "-q")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_restart_discards_the_part_file(cluster: LocalCluster, tmp_path: Path) -> None:
    target = tmp_path / "small.txt"
    Path(f"{target}.part").write_bytes(b"stale bytes")
    Path(f"{target}.part.json").write_text("{}")
    result = cluster.client(
        "get", "videos/small.txt", "-o", str(target), "--restart", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bytes_reused"] == 0
    assert target.read_bytes() == b"small\n"
    assert not Path(f"{target}.part").exists()


def test_a_mistyped_name_suggests_close_names(cluster: LocalCluster) -> None:
    result = cluster.client("get", "vidoes/small.txt")
    assert result.returncode == 1
    assert result.stderr == (
        "redesdl: no file named 'vidoes/small.txt' on the central; "
        "did you mean 'videos/small.txt'?\n"
    )


def test_list_has_a_header_and_takes_options_after_the_command(
    cluster: LocalCluster,
) -> None:
    result = subprocess.run(
        [str(BIN / "redesdl"), "list", "--central", cluster.central_address],
        capture_output=True,
        text=True,
        timeout=60,
        env=cluster.client_environment(),
    )
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "SIZE", "SOURCES", "SHA256"]
    assert [row.split()[0] for row in rows] == [CLIP, "videos/small.txt"]


def test_the_central_counts_no_failure_for_a_local_mistake(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    existing = tmp_path / "small.txt"
    existing.write_bytes(b"mine")
    result = cluster.client("get", "videos/small.txt", "-o", str(existing))
    assert result.returncode == 1
    log = cluster.root / "logs" / "central.log"
    wait_until(lambda: log.exists(), 5, "the central's log")
    assert "already exists" not in log.read_text()


def test_direct_io_goes_to_disk_without_filling_the_page_cache(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    if not direct_writes_work_in(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    target = tmp_path / "clip.mp4"
    result = cluster.client("get", CLIP, "-o", str(target), "--direct-io")
    assert result.returncode == 0, result.stderr
    # The last bytes off a block and any endgame duplicate that won go
    # through the page cache; the rest went straight to disk.
    share = resident_share(target)
    assert target.read_bytes() == DATA
    assert share < 0.5, f"{share:.0%} of the download stayed in the page cache"


def test_no_direct_io_leaves_the_download_in_the_page_cache(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    target = tmp_path / "clip.mp4"
    result = cluster.client("get", CLIP, "-o", str(target), "--no-direct-io")
    assert result.returncode == 0, result.stderr
    share = resident_share(target)
    assert target.read_bytes() == DATA
    assert share > 0.5, f"only {share:.0%} of the download is in the page cache"
