"""The web dashboard against hostile HTTP, over real TCP on 127.0.0.1.

Each case once let a peer without the token make the central hold or write
without bound: a request body stored in a temporary file before the 405, replies
to pipelined requests never read held in memory, a log line per HEAD, a
traceback per many-ranged static request, descriptors without a cap.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from redesdl.central.web.service import CappedConnections
from redesdl.central.web.site import STATIC
from redesdl.shells.tracking import ConnectionLimits

from .inprocess import Cluster
from .test_web_api import TOKEN, start_dashboard


@pytest_twisted.async_yield_fixture
async def web_port(tmp_path: Path) -> AsyncIterator[int]:
    cluster = Cluster(tmp_path)
    try:
        yield await start_dashboard(cluster)
    finally:
        await cluster.stop()


def exchange(port: int, sent: bytes) -> bytes:
    """Send C{sent}, then read until the server closes (at most 20 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as peer:
        try:
            peer.sendall(sent)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed before all of it went: what it said is still read
        received = b""
        try:
            while chunk := peer.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        return received


def request(path: str, method: str = "GET", *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


@pytest_twisted.ensureDeferred
async def test_a_request_with_a_body_is_refused_before_the_body_is_read(
    web_port: int,
) -> None:
    for framing in ("Content-Length: 100000000", "Transfer-Encoding: chunked"):
        head = request("/api/summary", "POST", framing)
        reply = await deferToThread(exchange, web_port, head + b"x" * 65536)
        assert reply.startswith(b"HTTP/1.1 413 "), (framing, reply[:80])
    # A body read whole with its headers is refused all the same, once.
    small = request("/api/summary", "POST", "Content-Length: 5") + b"hello"
    reply = await deferToThread(exchange, web_port, small)
    assert reply.startswith(b"HTTP/1.1 413 ") and reply.count(b"HTTP/1.1") == 1


@pytest_twisted.ensureDeferred
async def test_pipelined_requests_get_one_reply_then_the_close(web_port: int) -> None:
    """A peer that never reads its replies cannot make the central hold them."""
    one = request("/api/summary", "GET", f"Authorization: Bearer {TOKEN}")
    reply = await deferToThread(exchange, web_port, one * 3)
    assert reply.count(b"HTTP/1.1 ") == 1
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nconnection: close\r\n" in reply.lower()


@pytest_twisted.ensureDeferred
async def test_head_ranges_and_bad_paths_log_nothing_and_answer_plainly(
    web_port: int,
) -> None:
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        head = await deferToThread(exchange, web_port, request("/api/none", "HEAD"))
        ranges = "Range: bytes=" + ",".join(["0-0"] * 1000)
        whole = await deferToThread(
            exchange, web_port, request("/static/app.js", "GET", ranges)
        )
        nul = await deferToThread(exchange, web_port, request("/static/x%00"))
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert head.startswith(b"HTTP/1.1 401 ") and head.endswith(b"\r\n\r\n")
    assert whole.startswith(b"HTTP/1.1 200 ")
    assert whole.endswith((STATIC / "app.js").read_bytes())
    assert nul.startswith(b"HTTP/1.1 404 ") and b'"not_found"' in nul
    for reply in (head, whole, nul):
        assert b"\r\nx-content-type-options: nosniff\r\n" in reply.lower()
    assert [event for event in logged if event.get("log_level").name != "debug"] == []


def test_connections_over_either_cap_are_closed_at_once() -> None:
    capped = CappedConnections(Factory.forProtocol(Protocol), ConnectionLimits(3, 2))

    def connect(host: str) -> Any:
        address = IPv4Address("TCP", host, 40000)
        protocol = capped.buildProtocol(address)
        if protocol is not None:
            protocol.makeConnection(StringTransport(peerAddress=address))
        return protocol

    first, second = connect("10.0.0.1"), connect("10.0.0.1")
    assert connect("10.0.0.1") is None  # over the per-address cap
    third = connect("10.0.0.2")
    assert connect("10.0.0.3") is None  # over the total cap
    assert None not in (first, second, third)
    first.connectionLost(Failure(ConnectionDone()))
    assert connect("10.0.0.1") is not None
