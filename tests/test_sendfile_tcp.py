"""A real chunk server sends a file with os.sendfile over TCP on 127.0.0.1."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import ClientCreator, Protocol

from redesdl.protocol.sources import SourceAddress
from redesdl.secondary.chunkserver import ChunkServerFactory
from redesdl.transfer.download import Download

from .inprocess import eventually
from .secondaryparts import fresh_stats, scanned_index

SIZE = 20 * 1024 * 1024 + 4321


@pytest_twisted.ensureDeferred
async def test_a_download_is_sent_by_the_kernel_and_arrives_intact(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    content = os.urandom(SIZE)
    (data / "big.bin").write_bytes(content)
    index = scanned_index(data, tmp_path / "index.json")
    stats = fresh_stats(tmp_path / "stats.json")
    factory = ChunkServerFactory(index, "s1", stats, clock=reactor)
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        source = SourceAddress("s1", "127.0.0.1", listening.getHost().port)
        target = tmp_path / "big.bin"
        info = index.entries["big.bin"].manifest.info
        await Download(info, [source], str(target), reactor=reactor).start()
        assert target.read_bytes() == content
        assert factory.sent_by_kernel == SIZE
        assert stats.data["served"]["big.bin"]["bytes"] == SIZE
    finally:
        await listening.stopListening()
        await eventually(lambda: not factory.connections, "connections to close")


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("send_buffer", [None, 3 * 1024 * 1024])
async def test_a_plain_connection_gets_the_send_buffer_asked_for(
    tmp_path: Path, send_buffer: int | None
) -> None:
    index = scanned_index(tmp_path, tmp_path / "index.json")
    stats = fresh_stats(tmp_path / "stats.json")
    factory = ChunkServerFactory(
        index, "s1", stats, clock=reactor, sendBuffer=send_buffer
    )
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = await ClientCreator(reactor, Protocol).connectTCP(
        "127.0.0.1", listening.getHost().port
    )
    try:
        (served,) = await eventually(lambda: list(factory.connections), "a connection")
        sock = served.transport.getHandle()
        size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        if send_buffer is None:
            assert size < 2 * 3 * 1024 * 1024, "the kernel's own size is kept"
        else:
            assert size == 2 * send_buffer, "Linux reports what was asked, doubled"
    finally:
        client.transport.loseConnection()
        await listening.stopListening()
        await eventually(lambda: not factory.connections, "connections to close")
