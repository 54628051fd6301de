"""The systemd units in contrib/systemd: valid, and socket activation works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from redesdl.localcluster import LocalCluster
from redesdl.manifest import file_sha256 as sha256_file

pytestmark = pytest.mark.e2e
UNITS = Path(__file__).parent.parent / "contrib" / "systemd"
BIN = Path(sys.executable).parent


def needs(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    return path


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = needs("systemd-analyze")
    for unit in UNITS.glob("*.s*"):
        text = unit.read_text().replace("/usr/local/bin/twistd", str(BIN / "twistd"))
        (tmp_path / unit.name).write_text(text)
    instance = tmp_path / "redesdl-secondary@s1.service"
    shutil.copy(tmp_path / "redesdl-secondary@.service", instance)
    result = subprocess.run(
        [
            analyze,
            "verify",
            str(tmp_path / "redesdl-central.socket"),
            str(tmp_path / "redesdl-central.service"),
            str(instance),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.parametrize(
    "listen",
    ["systemd:domain=INET:name=redesdl-central", "systemd:domain=INET:index=0"],
)
def test_a_socket_activated_central_serves_a_download(
    tmp_path: Path, listen: str
) -> None:
    needs("systemd-socket-activate")
    cluster = LocalCluster(
        tmp_path / "c", secondaries=2, secret=True, socket_activated=listen
    )
    with cluster:
        assert cluster.central is not None
        assert cluster.central.wrapper, "the central runs under socket activation"
        data = os.urandom(3 * 1024 * 1024)
        (cluster.data(1) / "activated.bin").write_bytes(data)
        entry = cluster.wait_for_sources("activated.bin", 2)
        out = tmp_path / "activated.bin"
        result = cluster.client("get", "activated.bin", "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert sha256_file(out) == entry["sha256"]
