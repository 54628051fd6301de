"""A client facing a fake central: the output name is the user's, not the
central's, and a job stopped at any point after its admission is recorded."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol

from redesdl.client.access import ClusterAccess
from redesdl.client.central import BadCentralReplyError
from redesdl.client.job import GetJob, InterruptedByUserError
from redesdl.client.stats import ClientStats
from redesdl.endpoints import central_endpoint
from redesdl.protocol.codec import FrameDecoder, MessageReceived, encode
from redesdl.protocol.wire import CENTRAL_INBOUND

from .clientstats import client_stats

SHA = "ab" * 32


class LyingCentral(Protocol):
    """Welcomes anyone, then locates every file as C{evil.bin}."""

    def connectionMade(self) -> None:
        self.decoder = FrameDecoder(CENTRAL_INBOUND, 1 << 16)

    def dataReceived(self, data: bytes) -> None:
        for event in self.decoder.feed(data):
            if not isinstance(event, MessageReceived):
                continue
            message: Any = event.message
            if message.TYPE == "hello":
                reply = {"type": "welcome", "id": message.id, "version": 1}
            elif message.TYPE in ("locate", "admit"):
                reply = {
                    "type": "located" if message.TYPE == "locate" else "admitted",
                    "id": message.id,
                    "file": {"name": "evil.bin", "size": 1, "sha256": SHA, "root": SHA},
                    "sources": [],
                    "queued_seconds": 0,
                }
            else:
                continue
            self.transport.write(encode(reply))


class SilentAfterAdmission(Protocol):
    """Locates and admits the file asked for, then never answers again."""

    def connectionMade(self) -> None:
        self.decoder = FrameDecoder(CENTRAL_INBOUND, 1 << 16)
        self.locates = 0
        self.factory.asked.append(self)

    def dataReceived(self, data: bytes) -> None:
        for event in self.decoder.feed(data):
            if not isinstance(event, MessageReceived):
                continue
            message: Any = event.message
            if message.TYPE == "hello":
                reply = {"type": "welcome", "id": message.id, "version": 1}
            elif message.TYPE == "admit" or (
                message.TYPE == "locate" and self.locates == 0
            ):
                self.locates += message.TYPE == "locate"
                reply = {
                    "type": "located" if message.TYPE == "locate" else "admitted",
                    "id": message.id,
                    "file": {
                        "name": message.name,
                        "size": 1,
                        "sha256": SHA,
                        "root": SHA,
                    },
                    "sources": [],
                    "queued_seconds": 0,
                }
            else:
                if not self.factory.unanswered.called:
                    self.factory.unanswered.callback(message.TYPE)
                continue
            self.transport.write(encode(reply))


async def listen(protocol: type[Protocol]) -> Any:
    factory = Factory.forProtocol(protocol)
    factory.asked = []
    factory.unanswered = Deferred()
    return await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)


@pytest_twisted.async_yield_fixture
async def central_port() -> AsyncIterator[int]:
    port = await listen(LyingCentral)
    try:
        yield port.getHost().port
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_central_answering_for_another_file_writes_nothing(
    central_port: int, tmp_path: Path
) -> None:
    job = GetJob(
        reactor,
        ClusterAccess(central_endpoint(reactor, f"127.0.0.1:{central_port}")),
        "tester",
        "clip.mp4",
        str(tmp_path),
        retryFor=0,
    )
    with pytest.raises(BadCentralReplyError, match=r"answered for 'evil\.bin'"):
        await job.run()
    assert os.listdir(tmp_path) == []


@pytest_twisted.ensureDeferred
async def test_a_job_stopped_after_its_admission_is_recorded_as_interrupted(
    tmp_path: Path,
) -> None:
    port = await listen(SilentAfterAdmission)
    stats_path = tmp_path / "stats.sqlite"
    stats = ClientStats(str(stats_path))
    try:
        job = GetJob(
            reactor,
            ClusterAccess(
                central_endpoint(reactor, f"127.0.0.1:{port.getHost().port}")
            ),
            "tester",
            "clip.mp4",
            str(tmp_path),
            stats=stats,
        )
        outcome: list[Any] = []
        job.start().addBoth(outcome.append)
        # Admitted, and locating again for fresh sources: no download yet.
        assert await port.factory.unanswered == "locate"
        assert job.download is None
        await job.stop()
        assert isinstance(outcome[0].value, InterruptedByUserError)
    finally:
        stats.close()
        await port.stopListening()
    record = client_stats(stats_path)["downloads"][-1]
    assert record["file"] == "clip.mp4"
    assert record["path"] == str(tmp_path / "clip.mp4")
    assert (record["result"], record["reason"]) == ("failed", "interrupted")
    assert record["bytes_fetched"] == 0
