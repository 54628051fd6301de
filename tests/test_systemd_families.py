"""The shipped socket unit gives the central a socket of the family it adopts.

``ListenStream=7000`` gives an IPv6 socket on dual-stack hosts; adopted as
``domain=INET`` it accepted, then every peer address was garbage. The unit
now names an IPv4 address, and a central handed a socket of another family
than its ``--listen`` names refuses to start, in one line.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from redesdl.localcluster import LocalCluster, free_port, wait_until
from redesdl.manifest import file_sha256

from .test_systemd import UNITS, needs

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def unit_setting(unit: str, key: str) -> str:
    text = (UNITS / unit).read_text().replace("\\\n", " ")
    found = re.search(rf"^{key}=(.*)$", text, re.MULTILINE)
    assert found, f"{unit} has no {key}="
    return found.group(1)


def service_listen() -> str:
    found = re.search(
        r"--listen (\S+)", unit_setting("redesdl-central.service", "ExecStart")
    )
    assert found
    return found.group(1)


def test_the_socket_unit_names_the_family_the_service_adopts() -> None:
    listen = unit_setting("redesdl-central.socket", "ListenStream")
    assert listen == "0.0.0.0:7000"
    assert "domain=INET:" in service_listen()


def test_the_shipped_units_serve_a_download_over_ipv4(tmp_path: Path) -> None:
    """As systemd would with ListenStream=0.0.0.0:PORT, on loopback."""
    needs("systemd-socket-activate")
    cluster = LocalCluster(
        tmp_path / "c", secondaries=2, secret=True, socket_activated=service_listen()
    )
    with cluster:
        data = os.urandom(1024 * 1024)
        (cluster.data(1) / "v4.bin").write_bytes(data)
        entry = cluster.wait_for_sources("v4.bin", 2)
        out = tmp_path / "v4.bin"
        result = cluster.client("get", "v4.bin", "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert file_sha256(out) == entry["sha256"]


def test_an_ipv6_socket_adopted_as_inet_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    """What ``ListenStream=7000`` gives on a dual-stack host."""
    activate = needs("systemd-socket-activate")
    try:
        port = free_port("::1", socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    process = subprocess.Popen(
        [
            activate,
            f"--listen=[::1]:{port}",
            "--fdname=redesdl-central",
            str(BIN / "twistd"),
            "--pidfile=",
            "-n",
            "redesdl-central",
            "--listen",
            service_listen(),
            "--state-dir",
            str(tmp_path / "central"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def knocked() -> bool:
            try:
                socket.create_connection(("::1", port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_until(knocked, 30, "the socket to answer")
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    lines = [line for line in err.splitlines() if line.startswith("redesdl-central:")]
    assert lines == [
        "redesdl-central: --listen 'systemd:domain=INET:name=redesdl-central' "
        "names domain=INET but the socket systemd passed is INET6; give the "
        "socket unit an address of that family (ListenStream=0.0.0.0:PORT for "
        "INET; a bare port is INET6 on dual-stack hosts) (see --help)"
    ], err
    assert "Traceback" not in err


def install_steps() -> list[str]:
    text = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    block = re.search(r"^Install:\n\n```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert block, "operations.md has an Install: block"
    return [line.split("#")[0].split() for line in block.group(1).splitlines()]


def test_the_install_steps_create_every_folder_before_copying_into_it() -> None:
    made = {"/etc/systemd/system"}  # systemd's own, always there
    copied = 0
    for words in install_steps():
        if not words or words[0] not in ("cp", "install", "mkdir"):
            continue
        if words[0] == "mkdir" or "-d" in words:
            for path in (w for w in words[1:] if w.startswith("/")):
                made.update(str(p) for p in [Path(path), *Path(path).parents])
            continue
        target = words[-1]
        folder = (
            target.rstrip("/") if target.endswith("/") else str(Path(target).parent)
        )
        assert folder in made, f"{' '.join(words)}: nothing made {folder} before"
        copied += 1
    assert copied >= 3
