"""A daemon that hangs up on a peer over TLS closes the connection even when
the peer stays silent, over real TLS on 127.0.0.1.

A polite close over TLS waits for the peer's close_notify, and first for its
handshake if our last words are still to go. A peer refused at hello, or
turned away as over a cap, that then said nothing kept its socket (and its
place under the caps) for ever: 63 of them locked their address out.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from redesdl.devca import TestAuthority
from redesdl.fsutil import write_private_file
from redesdl.protocol.codec import encode

from .inprocess import Cluster, eventually

#: Seconds the daemons give a hang-up here (5 by default).
GRACE = 0.5


class SilentPeer:
    """A TLS peer, in a thread, that says what it is told, reads one reply,
    then neither reads nor answers the close until released."""

    def __init__(self, port: int, tls: list[str]) -> None:
        _, ca, _, cert, _, key = tls
        self._context = ssl.create_default_context(cafile=ca)
        self._context.load_cert_chain(cert, key)
        self._port = port
        self.released = threading.Event()

    def say_then_hold(self, message: dict[str, Any]) -> bytes:
        """Say C{message}; return the reply's bytes, then hold the socket."""
        raw = socket.create_connection(("127.0.0.1", self._port), timeout=10)
        with self._context.wrap_socket(raw, server_hostname="127.0.0.1") as peer:
            peer.sendall(encode(message))
            reply = peer.recv(65536)
            self.released.wait(30)
            return reply


def closed_untouched(port: int) -> bool:
    """Connect over TCP and never start the handshake: whether the daemon
    closed the connection within 20 s."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.settimeout(20)
        try:
            return raw.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


@pytest_twisted.async_yield_fixture
async def secure_central(
    tmp_path: Path,
) -> AsyncIterator[tuple[Cluster, TestAuthority]]:
    authority = TestAuthority(tmp_path / "pki")
    secret = tmp_path / "cluster.secret"
    write_private_file(str(secret), f"{secrets.token_urlsafe(32)}\n".encode())
    cluster = Cluster(tmp_path)
    await cluster.start_central(
        *authority.issue("central"),
        "--secret-file",
        str(secret),
        "--max-per-peer",
        "2",
    )
    cluster.central.factory.closeGrace = GRACE
    try:
        yield cluster, authority
    finally:
        await cluster.stop()


def central_port(cluster: Cluster) -> int:
    return int(cluster.central.listener.port.getHost().port)


@pytest_twisted.ensureDeferred
async def test_a_secondary_refused_at_hello_is_closed_though_it_stays_silent(
    secure_central: tuple[Cluster, TestAuthority],
) -> None:
    cluster, authority = secure_central
    factory = cluster.central.factory
    peer = SilentPeer(central_port(cluster), authority.issue("mallory"))
    hello = {
        "type": "hello",
        "version": 1,
        "role": "secondary",
        "id": 1,
        "name": "mallory",
        "secondary_id": "x" * 32,
        "boot": 1,
        "port": 7999,
    }
    held = deferToThread(peer.say_then_hold, hello)
    try:
        [refused] = await eventually(lambda: list(factory.connections), "the peer in")
        await eventually(
            lambda: refused not in factory.connections, "the central to close it", 15
        )
    finally:
        peer.released.set()
        reply = await held
    assert b"unauthenticated" in reply


@pytest_twisted.ensureDeferred
async def test_a_connection_over_the_cap_is_cut_though_it_never_shakes_hands(
    secure_central: tuple[Cluster, TestAuthority],
) -> None:
    cluster, authority = secure_central
    factory = cluster.central.factory
    port = central_port(cluster)
    peers = [SilentPeer(port, authority.issue("client")) for _ in range(2)]
    hello = {"type": "hello", "version": 1, "role": "client", "id": 1, "name": "c"}
    holding = [deferToThread(peer.say_then_hold, hello) for peer in peers]
    try:
        await eventually(lambda: len(factory.connections) == 2, "two clients in")
        started = reactor.seconds()
        closed = await deferToThread(closed_untouched, port)
        waited = reactor.seconds() - started
    finally:
        for peer in peers:
            peer.released.set()
        for held in holding:
            await held
    # Cut after the grace (a busy reply gets its chance), long before the
    # idle timeout (60 s).
    assert closed and waited >= GRACE
