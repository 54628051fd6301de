"""Hostile peers at the central and a secondary while a real download runs.

Attackers connect from 127.0.0.2 and hold idle sockets from 127.0.0.3 (still
loopback), so the per-address cap applies to them and not to the real client
on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from redesdl.localcluster import LocalCluster, wait_until
from redesdl.manifest import file_sha256 as sha256_file

pytestmark = pytest.mark.e2e
ATTACKER = "127.0.0.2"
IDLER = "127.0.0.3"


def connect(port: int, source: str = ATTACKER) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", port), timeout=2, source_address=(source, 0)
    )


#: Error codes the HTTP attack was answered with.
HTTP_ANSWERS: set[str] = set()


def random_bytes(port: int, rng: random.Random) -> None:
    with connect(port) as peer:
        peer.sendall(rng.randbytes(rng.randrange(1, 4096)))


def oversized_prefix(port: int, rng: random.Random) -> None:
    with connect(port) as peer:
        peer.sendall(struct.pack("!I", rng.randrange(2**20, 2**32)) + b"{}")


def half_frame(port: int, rng: random.Random) -> None:
    with connect(port) as peer:
        peer.sendall(struct.pack("!I", 200) + b'{"type": "hel')


def http_request(port: int, rng: random.Random) -> None:
    with connect(port) as peer:
        peer.sendall(b"GET / HTTP/1.1\r\nHost: redesdl\r\n\r\n")
        try:
            answer = peer.recv(1024)
        except OSError:
            return
        if len(answer) > 4:
            HTTP_ANSWERS.add(json.loads(answer[4:]).get("code"))


def bad_json(port: int, rng: random.Random) -> None:
    body = rng.choice([b"[1,2]", b'{"type": 7}', b"\xff\xfe", b'{"type":"x"}' * 3])
    with connect(port) as peer:
        peer.sendall(struct.pack("!I", len(body)) + body)


ATTACKS: list[Callable[[int, random.Random], None]] = [
    random_bytes,
    oversized_prefix,
    half_frame,
    http_request,
    bad_json,
]


def attacker(port: int, seed: int, stop: threading.Event, counts: list[int]) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            rng.choice(ATTACKS)(port, rng)
            counts[0] += 1
        except OSError:
            counts[1] += 1


def test_a_download_completes_while_daemons_are_attacked(tmp_path: Path) -> None:
    limits = ["--idle-timeout", "3", "--max-per-peer", "20"]
    cluster = LocalCluster(
        tmp_path / "c",
        secret=True,
        central_args=limits,
        secondary_args=[*limits, "--rate-limit", "4M"],
    )
    HTTP_ANSWERS.clear()
    with cluster:
        data = os.urandom(24 * 1024 * 1024 + 3)
        (cluster.data(1) / "target.bin").write_bytes(data)
        entry = cluster.wait_for_sources("target.bin", 3)
        assert cluster.central is not None and cluster.central.port is not None
        ports = [cluster.central.port, cluster.secondaries[1].port]
        idle = [connect(port, IDLER) for port in ports for _ in range(40) if port]
        stop = threading.Event()
        counts = [0, 0]
        threads = [
            threading.Thread(target=attacker, args=(port, seed, stop, counts))
            for seed, port in enumerate(ports * 3)
            if port
        ]
        for thread in threads:
            thread.start()
        try:
            out = tmp_path / "target.bin"
            result = cluster.client("get", "target.bin", "-o", str(out), "--json")
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        assert result.returncode == 0, result.stderr
        assert sha256_file(out) == entry["sha256"]
        assert counts[0] > 100, counts
        assert "too_large" in HTTP_ANSWERS
        assert not HTTP_ANSWERS - {"too_large", "busy"}

        def all_closed_by_the_servers() -> bool:
            for peer in idle:
                peer.settimeout(0.05)
                try:
                    if peer.recv(1024) == b"":
                        continue
                except TimeoutError:
                    return False
                except OSError:
                    continue
            return True

        wait_until(all_closed_by_the_servers, 20, "idle sockets to be closed")
        for peer in idle:
            peer.close()
        assert all(d.running for d in [cluster.central, *cluster.secondaries.values()])
        assert cluster.wait_for_sources("target.bin", 3)
        for daemon in [cluster.central, *cluster.secondaries.values()]:
            log = daemon.log.read_text()
            assert "Traceback" not in log and "Unhandled" not in log, daemon.name
        central_log = cluster.central.log.read_text()
        for source in (ATTACKER, IDLER):
            lines = [line for line in central_log.splitlines() if source in line]
            assert 0 < len(lines) <= 12, lines
