"""Hostile shapes and strings at real daemons: one typed error, never a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from redesdl.protocol.codec import encode

from .inprocess import Cluster, eventually
from .rawpeer import connect, port_of

TOKEN = "t" * 32


@pytest_twisted.async_yield_fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        await running.start_central()
        await running.start_secondary("s1")
        (running.data("s1") / "a.bin").write_bytes(b"x" * 1000)
        await running.wait_for_sources("a.bin", 1)
        yield running
    finally:
        await running.stop()


def nested_frame(depth: int) -> bytes:
    body = b'{"type":"ping","id":1,"x":' + b"[" * depth + b"]" * depth + b"}"
    return len(body).to_bytes(4, "big") + body


@pytest_twisted.ensureDeferred
async def test_deep_nesting_is_bad_frame_at_every_daemon(cluster: Cluster) -> None:
    # Each as deep as the daemon's largest frame allows.
    for port, depth in (
        (port_of(cluster.central), 20_000),
        (port_of(cluster.secondaries["s1"]), 7_000),
    ):
        peer = await connect(port)
        peer.transport.write(nested_frame(depth))
        await peer.closed
        assert [(f["type"], f["code"]) for f in peer.frames()] == [
            ("error", "bad_frame")
        ]


@pytest_twisted.ensureDeferred
async def test_a_lone_surrogate_name_is_refused_and_locate_still_works(
    cluster: Cluster,
) -> None:
    peer = await connect(port_of(cluster.central))
    hello = {"type": "hello", "version": 1, "role": "client", "id": 1}
    peer.transport.write(encode({**hello, "name": "\ud800", "token": TOKEN}))
    peer.transport.write(encode({**hello, "name": "eve", "token": TOKEN, "id": 2}))
    peer.transport.write(encode({"type": "locate", "id": 3, "name": "a.bin"}))
    await eventually(lambda: len(peer.frames()) >= 3, "three replies")
    first, second, third = peer.frames()[:3]
    assert (first["type"], first["code"], first["id"]) == ("error", "bad_request", 1)
    assert "surrogate" in first["message"]
    assert second["type"] == "welcome"
    assert third["type"] == "located" and third["file"]["name"] == "a.bin"
    peer.transport.loseConnection()
    await peer.closed


@pytest_twisted.ensureDeferred
async def test_a_lone_surrogate_client_name_never_reaches_a_chunk_server(
    cluster: Cluster,
) -> None:
    peer = await connect(port_of(cluster.secondaries["s1"]))
    peer.transport.write(
        encode(
            {"type": "hello", "version": 1, "role": "client", "id": 1, "name": "\udfff"}
        )
    )
    await eventually(lambda: peer.frames(), "a reply")
    (reply,) = peer.frames()
    assert (reply["type"], reply["code"]) == ("error", "bad_request")
    peer.transport.loseConnection()
    await peer.closed


@pytest_twisted.ensureDeferred
async def test_a_secondary_named_with_a_bidi_override_is_refused(
    cluster: Cluster,
) -> None:
    """Clients refuse a source whose name or host is not printable, so the
    central never lists one: it refuses them at the secondary's hello."""
    hello = {
        "type": "hello",
        "version": 1,
        "role": "secondary",
        "id": 1,
        "name": "s9",
        "secondary_id": "x" * 32,
        "boot": 1,
        "port": 7999,
    }
    for bad, said in (
        ({"name": "s\u202e9"}, "format characters"),
        ({"advertise": "host\x1b[2J"}, "advertised host"),
    ):
        peer = await connect(port_of(cluster.central))
        peer.transport.write(encode({**hello, **bad}))
        await eventually(lambda peer=peer: peer.frames(), "a reply")
        reply = peer.frames()[0]
        assert (reply["type"], reply["code"]) == ("error", "bad_request")
        assert said in reply["message"]
        peer.transport.loseConnection()
        await peer.closed


@pytest_twisted.ensureDeferred
async def test_a_chunk_server_refuses_the_names_and_versions_the_central_does(
    cluster: Cluster,
) -> None:
    """An empty name was counted as '?', an escape sequence stored in the
    statistics and forwarded to the central; ``"version": true`` passed as 1."""
    hello = {"type": "hello", "version": 1, "role": "client", "id": 1}
    for bad in (
        {**hello, "name": ""},
        {**hello, "name": "\x1b[2J\x9b31m"},
        {**hello, "name": "eve", "version": True},
    ):
        for port in (port_of(cluster.secondaries["s1"]), port_of(cluster.central)):
            peer = await connect(port)
            peer.transport.write(encode({**bad, "token": TOKEN}))
            await eventually(lambda peer=peer: peer.frames(), "a reply")
            reply = peer.frames()[0]
            assert reply["type"] == "error", (bad, port)
            assert reply["code"] in ("bad_request", "version"), (bad, port)
            peer.transport.loseConnection()
            await peer.closed


@pytest_twisted.ensureDeferred
async def test_a_folder_of_long_legal_names_is_listed(cluster: Cluster) -> None:
    """256 names of about 930 characters made the first files_added 281 KB,
    over the central's 256 KiB frame: the central hung up on the secondary,
    which registered again and again and never got its files listed."""
    folder = "/".join(["d" * 200] * 4)
    names = [f"{folder}/{index:03d}" + "f" * 125 for index in range(300)]
    for name in names:
        path = cluster.data("s1") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert all(928 < len(name) <= 1024 for name in names)
    for name in (names[0], names[255], names[-1]):
        await cluster.wait_for_sources(name, 1)


class UnreadPeer(Protocol):
    """Counts the frames it is sent, parsing them as they come."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.frames_seen = 0

    def dataReceived(self, data: bytes) -> None:
        self.pending += data
        while len(self.pending) >= 4:
            length = int.from_bytes(self.pending[:4], "big")
            if len(self.pending) < 4 + length:
                return
            del self.pending[: 4 + length]
            self.frames_seen += 1


@pytest_twisted.ensureDeferred
async def test_replies_never_read_cost_the_central_one_buffer(cluster: Cluster) -> None:
    """Requests whose replies were never read made the central build and hold
    every reply: 2000 list requests took it from 42 MB to 298 MB."""
    for index in range(300):
        path = cluster.data("s1") / ("d" * 200) / f"{index:03d}{'n' * 200}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    await cluster.wait_for_sources(f"{'d' * 200}/299{'n' * 200}", 1)
    peer = await connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port_of(cluster.central)),
        UnreadPeer(),
    )
    peer.transport.pauseProducing()
    hello = {"type": "hello", "version": 1, "role": "client", "id": 1}
    peer.transport.write(encode({**hello, "name": "eve", "token": TOKEN}))
    requests = 200  # each answered by a page of about 128 KiB: 25 MB
    for request_id in range(2, 2 + requests):
        peer.transport.write(encode({"type": "list", "id": request_id}))
    here = peer.transport.getHost().port
    (ours,) = [
        connection
        for connection in cluster.central.listener.factory.connections
        if connection.transport.getPeer().port == here
    ]
    await eventually(lambda: ours.transport.producerPaused, "reading paused")
    held = len(ours.transport.dataBuffer) + ours.transport._tempDataLen
    assert held < 1024 * 1024
    # Nothing was lost: every request is answered once the peer reads.
    peer.transport.resumeProducing()
    await eventually(lambda: peer.frames_seen == 1 + requests, "every reply", 60)
    peer.transport.loseConnection()
