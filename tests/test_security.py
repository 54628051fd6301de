"""The security switches on real processes: secret, tickets, TLS, bad secret files."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from redesdl.devca import TestAuthority
from redesdl.localcluster import LocalCluster, wait_until
from redesdl.manifest import file_sha256 as sha256_file
from redesdl.protocol.codec import encode
from redesdl.protocol.wire import PROTOCOL_VERSION

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def converse(
    port: int, *messages: dict[str, Any], replies: int = 0
) -> list[dict[str, Any]]:
    """Send C{messages} over plain TCP; read C{replies} frames, EOF or 5 s."""
    received: list[dict[str, Any]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as peer:
        for message in messages:
            peer.sendall(encode(message))
        data = b""
        while len(received) < replies:
            try:
                chunk = peer.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
            while len(data) >= 4 and len(data) >= 4 + struct.unpack_from("!I", data)[0]:
                (length,) = struct.unpack_from("!I", data)
                received.append(json.loads(data[4 : 4 + length]))
                data = data[4 + length :]
    return received


def test_only_secondaries_holding_the_secret_join(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "c", secondaries=1, secret=True) as cluster:
        (cluster.data(1) / "a.bin").write_bytes(os.urandom(1000))
        cluster.wait_for_sources("a.bin", 1)
        wrong = cluster.write_secret("wrong.secret")
        impostor = cluster.start_secondary(2, ["--secret-file", str(wrong)])
        outsider = cluster.start_secondary(3, with_secret=False)
        assert cluster.central is not None
        central_log = cluster.central.log

        def refused() -> bool:
            text = central_log.read_text()
            return (
                "refused secondary s2 from 127.0.0.1: wrong cluster secret" in text
                and "refused secondary s3 from 127.0.0.1: it has no cluster secret"
                in text
            )

        wait_until(refused, 20, "the central to refuse s2 and s3")
        wait_until(
            lambda: "wrong cluster secret" in impostor.log.read_text(),
            20,
            "s2 to log why it was refused",
        )
        wait_until(
            lambda: (
                "refused this secondary: it has no cluster secret"
                in outsider.log.read_text()
            ),
            20,
            "s3 to log why it did not join",
        )
        assert "RUNNING OPEN" not in central_log.read_text()
        assert [e["sources"] for e in cluster.listing()] == [1]
        located = cluster.client(
            "get", "a.bin", "-o", str(tmp_path / "a.bin"), "--json"
        )
        assert json.loads(located.stdout)["sources"] == {"s1": 1000}


def test_an_open_central_says_so_and_a_secondary_with_a_secret_will_not_join(
    tmp_path: Path,
) -> None:
    with LocalCluster(tmp_path / "c", secondaries=0) as cluster:
        assert cluster.central is not None
        wait_until(
            lambda: "RUNNING OPEN" in cluster.central.log.read_text(),
            10,
            "the open-central warning",
        )
        path = cluster.write_secret("mine.secret")
        careful = cluster.start_secondary(1, ["--secret-file", str(path)])
        wait_until(
            lambda: "refusing to join an open cluster" in careful.log.read_text(),
            20,
            "the secondary to refuse the open central",
        )


def test_a_secret_file_others_can_read_stops_the_daemon(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x" * 40)
    secret.chmod(0o644)
    result = subprocess.run(
        [
            str(BIN / "twistd"),
            "--pidfile=",
            "-n",
            "redesdl-central",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--state-dir",
            str(tmp_path / "state"),
            "--secret-file",
            str(secret),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"chmod 600 {secret}" in result.stderr
    assert "Traceback" not in result.stderr


def test_with_tickets_only_clients_the_central_sent_are_served(tmp_path: Path) -> None:
    with LocalCluster(
        tmp_path / "c", secret=True, secondary_args=["--require-tickets"]
    ) as cluster:
        data = os.urandom(2 * 1024 * 1024 + 7)
        (cluster.data(1) / "t.bin").write_bytes(data)
        entry = cluster.wait_for_sources("t.bin", 3)
        result = cluster.client(
            "-v", "get", "t.bin", "-o", str(tmp_path / "t.bin"), "--json"
        )
        assert result.returncode == 0, result.stderr
        assert sha256_file(tmp_path / "t.bin") == entry["sha256"]
        assert json.loads(result.stdout)["sources"]
        # No source refused the ticket (how many served depends on timing:
        # one that connects after the others fetched the file serves none).
        # (The test's folder, named after it, appears in the log's paths.)
        assert "ticket" not in result.stderr.replace(str(tmp_path), "")
        port = cluster.secondaries[1].port
        assert port is not None
        hello = {"type": "hello", "version": PROTOCOL_VERSION, "name": "x", "id": 1}
        ask = {"type": "manifest", "id": 2, "name": "t.bin", "sha256": entry["sha256"]}
        forged = {**ask, "id": 3, "ticket": {"expires": 2**40, "mac": "0" * 64}}
        answers = converse(port, hello, ask, forged, replies=3)
        assert [r.get("code") for r in answers[1:]] == [
            "ticket_required",
            "ticket_invalid",
        ]


def test_a_whole_cluster_over_mutual_tls(tmp_path: Path) -> None:
    authority = TestAuthority(tmp_path / "pki")
    secondary_tls = authority.issue("secondary")
    cluster = LocalCluster(
        tmp_path / "c",
        secondaries=2,
        central_args=authority.issue("central"),
        secondary_args=secondary_tls,
        client_args=authority.issue("client"),
        secret=True,
    )
    with cluster:
        data = os.urandom(3 * 1024 * 1024 + 1)
        (cluster.data(1) / "secret.bin").write_bytes(data)
        entry = cluster.wait_for_sources("secret.bin", 2)
        out = tmp_path / "secret.bin"
        result = cluster.client("get", "secret.bin", "-o", str(out), "--json")
        assert result.returncode == 0, result.stderr
        assert sha256_file(out) == entry["sha256"]
        assert sorted(json.loads(result.stdout)["sources"]) == ["s1", "s2"]

        plain = subprocess.run(
            [str(BIN / "redesdl"), "--central", cluster.central_address, "list"],
            capture_output=True,
            text=True,
            timeout=60,
            env=cluster.client_environment(),
        )
        assert plain.returncode == 3
        assert len(plain.stderr.strip().splitlines()) == 1, plain.stderr

        stranger = TestAuthority(tmp_path / "other-pki", "another CA").issue("mallory")
        outsider = subprocess.run(
            [
                str(BIN / "redesdl"),
                "--central",
                cluster.central_address,
                *stranger,
                "list",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=cluster.client_environment(),
        )
        assert outsider.returncode == 3, outsider.stderr
        assert outsider.stderr.strip() == (
            f"redesdl: cannot reach the central at {cluster.central_address}: "
            "TLS failed: certificate verify failed"
        )
        port = cluster.secondaries[1].port
        assert port is not None
        assert converse(port, {"type": "hello"}, replies=1) == []
