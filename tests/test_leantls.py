"""The chunk servers' TLS transport, over real TLS on 127.0.0.1.

L{LeanTLSTransport} replaces how Twisted's TLS transport writes; what the
peer reads must not change: every byte, in order, whatever the sizes of
the writes, and the close after them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.protocols.tls import BufferingTLSTransport
from twisted.test.iosim import IOPump, connectedServerAndClient

from redesdl.devca import TestAuthority
from redesdl.leantls import LeanTLSTransport, lean_tls_available, lean_tls_factory
from redesdl.tls import TLSConfig

PIECES = [
    b"x",
    os.urandom(16 * 1024),
    os.urandom(16 * 1024 + 1),
    os.urandom(256 * 1024),
    os.urandom(3 * 1024 * 1024 + 7),
    b"",
    b"end",
]


class Writer(Protocol):
    """Write every piece at once, then close."""

    def connectionMade(self) -> None:
        self.factory.transports.append(self.transport)  # type: ignore[attr-defined]
        for piece in PIECES:
            self.transport.write(piece)
        self.transport.loseConnection()


class Reader(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.calls = 0
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.calls += 1
        self.received += data

    def connectionLost(self, reason: object) -> None:
        self.closed.callback(bytes(self.received))


def configs(folder: Path) -> tuple[TLSConfig, TLSConfig]:
    authority = TestAuthority(folder)
    server = TLSConfig.load(*authority.issue("secondary")[1::2])
    client = TLSConfig.load(*authority.issue("client")[1::2])
    return server, client


def test_this_twisted_lets_servers_use_the_lean_transport() -> None:
    assert lean_tls_available(), "Twisted's TLS changed: servers fall back to it"


@pytest_twisted.ensureDeferred
async def test_a_peer_reads_every_byte_in_order_then_the_close(tmp_path: Path) -> None:
    server, client = configs(tmp_path / "pki")
    factory = Factory.forProtocol(Writer)
    factory.transports = []  # type: ignore[attr-defined]
    port = reactor.listenTCP(0, server.serverFactory(factory), interface="127.0.0.1")
    try:
        endpoint = client.clientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        reader = await connectProtocol(endpoint, Reader())
        received = await reader.closed.addTimeout(30, reactor)
    finally:
        await maybeDeferred(port.stopListening)
    assert received == b"".join(PIECES)
    (transport,) = factory.transports  # type: ignore[attr-defined]
    assert isinstance(transport, LeanTLSTransport)
    assert isinstance(transport, BufferingTLSTransport)
    assert isinstance(reader.transport, LeanTLSTransport), "clients use it too"


def pumped(folder: Path) -> tuple[Reader, Writer, IOPump]:
    """A TLS client and server joined by iosim: each pump hands every byte
    written so far to the other side in one C{dataReceived}."""
    server, client = configs(folder)
    writers = Factory.forProtocol(Writer)
    writers.transports = []  # type: ignore[attr-defined]
    readers = Factory.forProtocol(Reader)
    options = optionsForClientTLS(
        "127.0.0.1", trustRoot=client.authority, clientCertificate=client.own
    )
    address = IPv4Address("TCP", "127.0.0.1", 1)
    reader, writer, pump = connectedServerAndClient(
        lambda: server.serverFactory(writers).buildProtocol(address),
        lambda: lean_tls_factory(options, True, readers).buildProtocol(address),
        greet=False,
    )
    return reader.wrappedProtocol, writer.wrappedProtocol, pump


def test_the_records_of_one_read_reach_the_application_joined(tmp_path: Path) -> None:
    reader, _, pump = pumped(tmp_path / "pki")
    pump.flush()
    assert bytes(reader.received) == b"".join(PIECES)
    assert reader.closed.called, "the close came after the data, in the same read"
    # Twisted's own transport makes one call per 16 KiB record.
    records = sum(-(-len(piece) // (16 * 1024)) for piece in PIECES)
    assert records > 200
    assert reader.calls <= len(b"".join(PIECES)) // (256 * 1024) + 8


def test_a_server_encrypts_each_write_in_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sends: list[int] = []
    send = SSL.Connection.send

    def counted(self: SSL.Connection, data: Any, flags: int = 0) -> int:
        sent = send(self, data, flags)
        sends.append(sent)
        return sent

    monkeypatch.setattr(SSL.Connection, "send", counted)
    reader, _, pump = pumped(tmp_path / "pki")
    pump.flush()
    assert bytes(reader.received) == b"".join(PIECES)
    # With pyOpenSSL's partial writes, a call per 16 KiB record: over 200.
    assert sum(sends) == len(b"".join(PIECES))
    assert len(sends) <= len(PIECES)


def test_bytes_before_a_broken_record_arrive_then_the_failure(tmp_path: Path) -> None:
    reader, _, pump = pumped(tmp_path / "pki")
    # Handshake, and the writer's whole output waiting to be read.
    for _ in range(3):
        pump.pump()
    stream = bytearray(pump.serverIO.getOutBuffer() or b"")
    assert len(stream) > 3 * 1024 * 1024
    stream[2 * 1024 * 1024] ^= 1  # one bit of one record, mid-stream
    pump.clientIO.bufferReceived(bytes(stream))
    pump.flush()
    assert reader.closed.called
    received = bytes(reader.received)
    assert 0 < len(received) < 2 * 1024 * 1024
    assert received == b"".join(PIECES)[: len(received)]
