"""The central's slot rules over real TCP on 127.0.0.1, as a hoarder would try them."""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from redesdl.client.central import CentralConnection, connect_central
from redesdl.endpoints import central_endpoint
from redesdl.protocol.wire import Ping

from .inprocess import Cluster, eventually


@pytest_twisted.ensureDeferred
async def test_five_clients_that_admit_then_only_ping_no_longer_starve_everyone(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path)
    hoarders: list[CentralConnection] = []
    try:
        await cluster.start_central("--max-active", "5", "--slot-idle-timeout", "1")
        await cluster.start_secondary("s1")
        (cluster.data("s1") / "f.bin").write_bytes(b"f" * 1000)
        await cluster.wait_for_sources("f.bin", 1)
        endpoint = central_endpoint(reactor, cluster.central_address)
        expired: list[str] = []
        for i in range(5):
            hoarder = await connect_central(endpoint, f"hoarder{i}")
            hoarder.msg_error = lambda m, i=i: expired.append(m.code)
            await hoarder.admit("f.bin")
            hoarders.append(hoarder)
        queue = cluster.central.factory.admission
        assert len(queue.active) == 5
        patient = await connect_central(endpoint, "patient")
        hoarders.append(patient)
        started = reactor.seconds()
        for _ in range(3):
            for hoarder in hoarders[:5]:
                await hoarder.request(Ping(hoarder.allocateId()))
        admitted = Deferred.fromCoroutine(patient.admit("f.bin"))
        await admitted.addTimeout(10, reactor)
        assert reactor.seconds() - started < 10
        await eventually(lambda: len(expired) == 5, "every hoarder to hear why")
        assert expired == ["slot_expired"] * 5
        assert [t.client for t in queue.active] == ["patient"]
    finally:
        for connection in hoarders:
            await connection.close()
        await cluster.stop()
