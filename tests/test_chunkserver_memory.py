"""What a peer that never reads costs a chunk server, over real TCP on 127.0.0.1.

Flooders say hello, then pipeline ``manifest`` and ``get`` requests and never
read a byte. What the server holds for each of them (its transports' write
buffers, counted in bytes, plus blocks held back by the rate limit) must stay
under 4 MiB, and a well-behaved downloader must still get the whole file at
full speed meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThread

from redesdl.devca import TestAuthority
from redesdl.protocol.codec import encode
from redesdl.protocol.wire import PROTOCOL_VERSION
from redesdl.secondary.chunkserver import (
    BLOCK_SIZE,
    ChunkServerFactory,
    ChunkServerProtocol,
)
from redesdl.tls import TLSConfig

from .inprocess import eventually
from .secondaryparts import fresh_stats, scanned_index

MiB = 1024 * 1024
#: Most a connection that never reads may cost the server.
BOUND = 4 * MiB
SIZE = 64 * MiB + 12345


@dataclass
class Server:
    factory: ChunkServerFactory
    port: int
    name: str
    sha256: str
    chunks: int
    #: How clients wrap their sockets when the server speaks TLS.
    tls: ssl.SSLContext | None = None

    def connect(self, receive_buffer: int | None = None) -> socket.socket:
        peer = socket.socket()
        if receive_buffer is not None:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        peer.connect(("127.0.0.1", self.port))
        if self.tls is None:
            return peer
        return self.tls.wrap_socket(peer, server_hostname="127.0.0.1")


def tls_contexts(folder: Path) -> tuple[TLSConfig, ssl.SSLContext]:
    """The server's TLS config and a client context, from a test CA."""
    authority = TestAuthority(folder)
    _, ca, _, cert, _, key = authority.issue("secondary")
    _, _, _, client_cert, _, client_key = authority.issue("client")
    client = ssl.create_default_context(cafile=ca)
    client.load_cert_chain(client_cert, client_key)
    return TLSConfig.load(ca, cert, key), client


@pytest_twisted.async_yield_fixture(params=[False])
async def server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Server]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(os.urandom(SIZE))
    index = scanned_index(data, tmp_path / "index.json")
    stats = fresh_stats(tmp_path / "stats.json")
    factory = ChunkServerFactory(index, "s1", stats, clock=reactor)
    wrapped: Any = factory
    client_tls = None
    if request.param:
        server_tls, client_tls = tls_contexts(tmp_path / "pki")
        wrapped = server_tls.serverFactory(factory)
    listening = reactor.listenTCP(0, wrapped, interface="127.0.0.1")
    manifest = index.entries["big.bin"].manifest
    try:
        yield Server(
            factory,
            listening.getHost().port,
            "big.bin",
            manifest.sha256,
            len(manifest.chunk_hashes),
            client_tls,
        )
    finally:
        # A stalled peer never takes what is owed: abort rather than flush.
        for protocol in list(factory.connections):
            protocol.transport.abortConnection()
        await listening.stopListening()
        await eventually(lambda: not factory.connections, "connections to close")


def frame(message: dict[str, Any]) -> bytes:
    return encode(message)


class Flooder:
    """A peer that pipelines requests as fast as its socket takes them; never reads."""

    def __init__(
        self, server: Server, kinds: tuple[str, ...], limit: int | None = None
    ) -> None:
        self.socket = server.connect(receive_buffer=8192)
        self.socket.setblocking(False)
        self.address = self.socket.getsockname()
        self._server = server
        self._kinds = kinds
        self._pending = frame(
            {"type": "hello", "id": 1, "version": PROTOCOL_VERSION, "name": "flood"}
        )
        self._next = 2
        self._last = None if limit is None else 1 + limit
        self.sent = 0

    def pump(self, batch: int = 32) -> None:
        """Queue a batch of requests, then send what the socket will take."""
        if len(self._pending) < 64 * 1024:
            requests = []
            if self._last is not None:
                batch = min(batch, self._last - self._next + 1)
            for _ in range(batch):
                kind = self._kinds[self._next % len(self._kinds)]
                body = {
                    "type": kind,
                    "id": self._next,
                    "name": self._server.name,
                    "sha256": self._server.sha256,
                }
                if kind == "get":
                    body["index"] = self._next % self._server.chunks
                requests.append(frame(body))
                self._next += 1
            self._pending += b"".join(requests)
        if not self._pending:
            return
        try:
            sent = self.socket.send(self._pending)
        except (BlockingIOError, ConnectionError, ssl.SSLWantWriteError):
            return
        self._pending = self._pending[sent:]
        self.sent += sent

    def close(self) -> None:
        self.socket.close()


def held_by(protocol: Any) -> int:
    """What a server connection holds for its peer: its transport's unsent bytes."""
    transport = protocol.transport
    unsent = 0
    if not hasattr(transport, "_tempDataBuffer"):  # TLS, over TCP
        unsent += sum(map(len, transport._appSendBuffer))
        transport = transport.transport
    unsent += sum(map(len, transport._tempDataBuffer)) + len(transport.dataBuffer)
    unsent -= transport.offset
    held = getattr(protocol, "heldBytes", None)
    return max(unsent, held()) if held is not None else unsent


def download(server: Server) -> tuple[str, float]:
    """Fetch every chunk with two requests in flight; return the hash and seconds."""
    name, sha256, chunks = server.name, server.sha256, server.chunks
    started = time.monotonic()
    whole = hashlib.sha256()
    with server.connect() as peer:
        peer.settimeout(30)
        stream = peer.makefile("rb", buffering=1024 * 1024)

        def read_frame() -> dict[str, Any]:
            (length,) = struct.unpack("!I", stream.read(4))
            return json.loads(stream.read(length))

        def ask(index: int) -> None:
            peer.sendall(
                frame(
                    {
                        "type": "get",
                        "id": 10 + index,
                        "name": name,
                        "sha256": sha256,
                        "index": index,
                    }
                )
            )

        peer.sendall(
            frame({"type": "hello", "id": 1, "version": PROTOCOL_VERSION, "name": "c"})
        )
        assert read_frame()["type"] == "welcome"
        ask(0)
        ask(1)
        for index in range(chunks):
            header = read_frame()
            assert header["type"] == "chunk" and header["index"] == index, header
            if index + 2 < chunks:
                ask(index + 2)
            left = header["length"]
            while left:
                data = stream.read(min(left, 1024 * 1024))
                assert data, "the server closed mid-chunk"
                whole.update(data)
                left -= len(data)
    return whole.hexdigest(), time.monotonic() - started


async def sample(server: Server, flooders: list[Flooder], seconds: float) -> int:
    """Keep flooding for C{seconds}; return the most one flooder's connection held."""
    addresses = {flooder.address for flooder in flooders}
    most = 0
    deadline = reactor.seconds() + seconds
    while reactor.seconds() < deadline:
        for flooder in flooders:
            flooder.pump()
        for protocol in list(server.factory.connections):
            peer = protocol.transport.getPeer()
            if (peer.host, peer.port) in addresses:
                most = max(most, held_by(protocol))
        await deferLater(reactor, 0.01, lambda: None)
    return most


def flooding(server: Server, flooders: list[Flooder]) -> int:
    """How many of the flooders' connections the server holds."""
    addresses = {flooder.address for flooder in flooders}
    peers = [p.transport.getPeer() for p in server.factory.connections]
    return sum((peer.host, peer.port) in addresses for peer in peers)


async def flood_while_downloading(
    server: Server, flooders: list[Flooder]
) -> tuple[int, int]:
    """Flood and download meanwhile.

    Return the most one flooder's connection held, and how many flooders
    were still connected when the download ended.
    """
    expected, alone = await deferToThread(download, server)
    assert expected == server.sha256
    try:
        most = await sample(server, flooders, 1.0)
        pumping = LoopingCall(lambda: [f.pump() for f in flooders])
        pumping.start(0.01)
        try:
            sha256, meanwhile = await deferToThread(download, server)
            connected = flooding(server, flooders)
        finally:
            pumping.stop()
        most = max(most, await sample(server, flooders, 0.5))
    finally:
        for flooder in flooders:
            flooder.close()
    assert sha256 == server.sha256
    assert meanwhile <= 3 * alone + 2, (alone, meanwhile)
    assert all(flooder.sent > 0 for flooder in flooders)
    return most, connected


KINDS = [("manifest",), ("get",), ("manifest", "get", "ping")]


async def connect_flooders(server: Server, limit: int | None = None) -> list[Flooder]:
    """Nine flooders, connected (and through TLS handshakes) off the reactor."""
    return await deferToThread(
        lambda: [Flooder(server, KINDS[i % 3], limit) for i in range(9)]
    )


@pytest_twisted.ensureDeferred
async def test_pipelining_peers_that_never_read_cost_little(server: Server) -> None:
    """Nine peers pipeline 60 requests each (the cap is 64) and stay connected."""
    flooders = await connect_flooders(server, limit=60)
    most, connected = await flood_while_downloading(server, flooders)
    assert most <= BOUND, f"a peer that never reads made the server hold {most} bytes"
    assert connected >= len(flooders)


@pytest.mark.parametrize("server", [False, True], ids=["tcp", "tls"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_flooding_peers_that_never_read_cost_little(server: Server) -> None:
    """Nine peers send requests as fast as their sockets take them.

    The server stops reading each of them; one whose requests pile up past
    the cap of 64 is hung up on. Either way it costs the server little.
    """
    flooders = await connect_flooders(server)
    most, _ = await flood_while_downloading(server, flooders)
    assert most <= BOUND, f"a peer that never reads made the server hold {most} bytes"


@pytest_twisted.ensureDeferred
async def test_a_burst_of_requests_over_the_cap_is_hung_up_on(server: Server) -> None:
    burst = frame(
        {"type": "hello", "id": 1, "version": PROTOCOL_VERSION, "name": "burst"}
    ) + b"".join(
        frame(
            {
                "type": "get",
                "id": i,
                "name": server.name,
                "sha256": server.sha256,
                "index": 0,
            }
        )
        for i in range(2, 300)
    )
    peer = await deferToThread(server.connect)
    try:
        peer.sendall(burst)
        assert await deferToThread(closed_by_server, peer, 10.0)
    finally:
        peer.close()


def closed_by_server(peer: socket.socket, seconds: float) -> bool:
    """Read until the server closes the connection, for at most C{seconds}."""
    deadline = time.monotonic() + seconds
    peer.settimeout(seconds)
    try:
        while time.monotonic() < deadline:
            if not peer.recv(1024 * 1024):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


@pytest.mark.parametrize("server", [False, True], ids=["tcp", "tls"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_a_download_wakes_the_server_about_once_per_block(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server works when its transport has room, not in a loop until it has.

    Twisted's TLS calls a pull producer again and again until a write fills
    the TCP buffer; one registered while a block still sat in that buffer
    was called thousands of times per chunk, finding no room each time.
    """
    wakes = 0
    drained = ChunkServerProtocol.transportDrained

    def counted(protocol: ChunkServerProtocol) -> None:
        nonlocal wakes
        wakes += 1
        drained(protocol)

    monkeypatch.setattr(ChunkServerProtocol, "transportDrained", counted)
    sha256, _ = await deferToThread(download, server)
    assert sha256 == server.sha256
    blocks = -(-SIZE // BLOCK_SIZE) + server.chunks
    assert wakes <= 3 * blocks, f"{wakes} wakes for {blocks} blocks"
