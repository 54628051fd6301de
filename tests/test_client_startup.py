"""What a one-shot command costs before it does anything: no helper processes,
no garbage collection while it loads, no TLS stack unless it may use TLS."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from redesdl.client.options import build_parser, needs_tls_stack
from redesdl.devca import TestAuthority
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


def python_output(script: str, env: dict[str, str] | None = None) -> str:
    """What a fresh interpreter running C{script} prints."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return result.stdout


def test_loading_the_client_starts_no_process() -> None:
    # ctypes.util.find_library("c") used to run ldconfig on every start.
    assert json.loads(python_output(IMPORT_WATCHING_SPAWNS)) == []


COUNTING_COLLECTIONS = """
import gc, json, sys
import redesdl.client.launch
collections = []
before_enabled = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(1))
enable = gc.enable
gc.enable = lambda: (before_enabled.append(len(collections)), enable())
sys.argv = ["redesdl", "stats", "--json"]
if ENTRY == "entry point":
    main = redesdl.client.launch.main
else:
    from redesdl.client.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps([before_enabled, gc.isenabled()]))
"""


def collections_while_loading(entry: str, state: Path) -> tuple[int, bool]:
    """Collections run before C{redesdl stats} through C{entry} turned the
    collector back on, and whether it was on at the command's end."""
    script = f"ENTRY = {entry!r}\n" + COUNTING_COLLECTIONS
    printed = python_output(script, {"XDG_STATE_HOME": str(state)})
    [before_enabled], enabled = json.loads(printed.splitlines()[-1])
    return before_enabled, enabled


def test_the_command_loads_without_collecting_and_runs_with_the_collector_on(
    tmp_path: Path,
) -> None:
    # The script the installer writes calls redesdl.client.launch:main.
    [script] = entry_points(group="console_scripts", name="redesdl")
    assert script.value == "redesdl.client.launch:main"
    assert collections_while_loading("entry point", tmp_path) == (0, True)
    # Without the pause, loading the same modules collects many times.
    count, enabled = collections_while_loading("cli", tmp_path)
    assert count > 10 and enabled


RUNNING_THE_COMMAND = """
import json, sys
import redesdl.client.launch
sys.argv = ["redesdl", *ARGS]
status = None
try:
    redesdl.client.launch.main()
except SystemExit as e:
    status = e.code
loaded = {name.split(".")[0] for name, module in sys.modules.items() if module}
tls_stack = sorted(loaded & {"OpenSSL", "cryptography", "service_identity"})
print(json.dumps([status, tls_stack]))
"""


def closed_port() -> int:
    """A loopback port nothing listens on (it was just free)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_redesdl(args: list[str], state: Path) -> tuple[int, list[str], str]:
    """The exit status of C{redesdl ARGS} run through the command's entry
    point, the TLS packages it loaded, and its last line on stderr."""
    result = subprocess.run(
        [sys.executable, "-c", f"ARGS = {args!r}\n" + RUNNING_THE_COMMAND],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_STATE_HOME": str(state)},
    )
    status, tls_stack = json.loads(result.stdout.splitlines()[-1])
    return status, tls_stack, result.stderr.strip().splitlines()[-1]


def test_a_plain_command_loads_no_tls_stack(tmp_path: Path) -> None:
    central = f"127.0.0.1:{closed_port()}"
    status, tls_stack, line = run_redesdl(["--central", central, "list"], tmp_path)
    assert (status, tls_stack) == (3, [])
    assert line == (
        f"redesdl: cannot reach the central at {central}: connection refused"
    )


def test_a_command_given_tls_options_loads_the_tls_stack(tmp_path: Path) -> None:
    central = f"127.0.0.1:{closed_port()}"
    tls = TestAuthority(tmp_path / "pki").issue("client")
    status, tls_stack, line = run_redesdl(
        ["--central", central, *tls, "list"], tmp_path
    )
    assert status == 3 and "OpenSSL" in tls_stack
    assert line.endswith("connection refused")


def test_tls_options_given_empty_are_an_error_not_plain_tcp(tmp_path: Path) -> None:
    """An unset shell variable (--tls-ca=$CA) used to mean plain TCP."""
    central = f"127.0.0.1:{closed_port()}"
    empty = ["--tls-ca=", "--tls-cert=", "--tls-key="]
    status, _, line = run_redesdl(["--central", central, *empty, "list"], tmp_path)
    assert (status, line) == (
        1,
        "redesdl: --tls-ca, --tls-cert and --tls-key go together, each naming a file",
    )


def test_a_central_endpoint_string_may_need_tls_so_loads_the_stack(
    tmp_path: Path,
) -> None:
    central = f"tls:host=127.0.0.1:port={closed_port()}"
    status, tls_stack, line = run_redesdl(["--central", central, "list"], tmp_path)
    assert status == 3 and "OpenSSL" in tls_stack
    assert line.endswith("connection refused")


@pytest.mark.parametrize(
    "argv, needed",
    [
        (["list"], False),
        (["--central", "host.example:7000", "get", "a.bin"], False),
        (["--tls-ca", "ca.pem", "list"], True),
        (["list", "--tls-key", "client.key"], True),
        (["get", "a.bin", "--tls-cert", "client.pem"], True),
        (["--central", "tls:host.example:7000:trustRoots=ca", "list"], True),
        (["--central", "unix:path=/run/redesdl.sock", "list"], True),
        (["--central=a:1,tcp:host=b:port=2", "list"], True),
        (["--tls-ca=", "--tls-cert=", "--tls-key=", "list"], True),
        (["--tls-ca", "ca.pem", "stats"], False),
        (["--central", "tls:host=b:port=2", "stats"], False),
    ],
)
def test_the_tls_stack_is_needed_only_with_tls_options_or_an_endpoint_string(
    argv: list[str], needed: bool
) -> None:
    assert needs_tls_stack(build_parser().parse_args(argv)) is needed


def test_an_endpoint_string_in_the_environment_needs_the_tls_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDESDL_CENTRAL", "tls:host=b:port=2")
    assert needs_tls_stack(build_parser().parse_args(["list"]))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_early_writeback_is_available_on_linux(tmp_path: Path) -> None:
    assert writeback._sync_file_range is not None
    with open(tmp_path / "written", "wb+") as f:
        f.write(b"x" * 8192)
        f.flush()
        writeback.start_writeback(f.fileno(), 0, 8192)
        assert os.pread(f.fileno(), 4, 0) == b"xxxx"
