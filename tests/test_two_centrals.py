"""Two centrals: a secondary registers with both, a client falls back to the second."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor

from redesdl.central import tap as central_tap
from redesdl.client.central import connect_central
from redesdl.endpoints import central_endpoint

from .inprocess import Cluster, eventually


def dead_address() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest_twisted.async_yield_fixture
async def two_centrals(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Any, str]]:
    cluster = Cluster(tmp_path)
    options = central_tap.Options()
    options.parseOptions(
        ["--listen", "tcp:0:interface=127.0.0.1", "--state-dir", str(tmp_path / "b")]
    )
    second = central_tap.makeService(options, reactor)
    try:
        await cluster.start_central()
        second.startService()
        await second.listener.whenListening()
        address = f"127.0.0.1:{second.listener.port.getHost().port}"
        both = f"{cluster.central_address},{address}"
        (cluster.data("s1") / "a.bin").write_bytes(b"a" * 1000)
        await cluster.start_secondary("s1", "--central", both)
        yield cluster, second, address
    finally:
        await cluster.stop()
        await second.stopService()


@pytest_twisted.ensureDeferred
async def test_a_secondary_registers_with_every_central(two_centrals: Any) -> None:
    cluster, second, _ = two_centrals
    for registry in (cluster.registry, second.factory.registry):
        await eventually(
            lambda r=registry: r.entry("a.bin") is not None, "a.bin on each central"
        )
    assert [
        m.registered is not None for m in cluster.secondaries["s1"].memberships
    ] == [
        True,
        True,
    ]


@pytest_twisted.ensureDeferred
async def test_a_client_falls_back_to_the_next_central(two_centrals: Any) -> None:
    _, second, address = two_centrals
    await eventually(lambda: second.factory.registry.entry("a.bin"), "a.bin on b")
    endpoint = central_endpoint(reactor, f"{dead_address()},{address}")
    central = await connect_central(endpoint, "tester")
    try:
        names = [entry["name"] for entry in await central.list()]
    finally:
        await central.close()
    assert names == ["a.bin"]
