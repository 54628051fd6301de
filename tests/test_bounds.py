"""Bounds on what peers may hold: connection caps, idle timeouts, pages, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger

from redesdl.protocol.codec import encode
from redesdl.protocol.complaints import Complaints
from redesdl.protocol.wire import PROTOCOL_VERSION
from redesdl.shells.messages import MAX_REFUSALS
from redesdl.shells.tracking import CLOSE_GRACE, ConnectionLimits

from .test_central import A, Peer, _Address, client, make_factory, secondary
from .wire import frames


def test_a_peer_over_its_cap_gets_a_busy_error_and_others_still_connect(
    tmp_path: Path,
) -> None:
    factory = make_factory(tmp_path, Clock(), limits=ConnectionLimits(10, 2))
    held = [Peer(factory, host="10.0.0.9") for _ in range(2)]
    refused = factory.buildProtocol(_Address("10.0.0.9"))
    transport = StringTransport(peerAddress=_Address("10.0.0.9"))
    refused.makeConnection(transport)
    [error] = frames(transport.value())
    assert error["type"] == "error" and error["code"] == "busy"
    assert "10.0.0.9 already holds 2 connections" in error["message"]
    assert transport.disconnecting
    other = factory.buildProtocol(_Address("10.0.0.8"))
    assert other.__class__.__name__ == "CentralProtocol"
    held[0].hang_up()
    assert factory.buildProtocol(_Address("10.0.0.9")).__class__.__name__ == (
        "CentralProtocol"
    )


def test_a_connection_over_a_cap_is_cut_if_its_close_does_not_end(
    tmp_path: Path,
) -> None:
    """Over TLS the close waits for the peer, which may never answer."""
    clock = Clock()
    factory = make_factory(tmp_path, clock, limits=ConnectionLimits(1, 1))
    Peer(factory, host="10.0.0.9")
    refused = factory.buildProtocol(_Address("10.0.0.9"))
    transport = StringTransport(peerAddress=_Address("10.0.0.9"))
    refused.makeConnection(transport)
    assert transport.disconnecting and not transport.disconnected
    clock.advance(CLOSE_GRACE - 0.1)
    assert not transport.disconnected
    clock.advance(0.1)
    assert transport.disconnected  # aborted


def test_the_total_cap_refuses_every_address(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock(), limits=ConnectionLimits(2, 2))
    Peer(factory, host="10.0.0.1")
    Peer(factory, host="10.0.0.2")
    refused = factory.buildProtocol(_Address("10.0.0.3"))
    assert refused.__class__.__name__ == "OverCapacity"


def test_silent_connections_are_closed_but_queued_clients_wait(tmp_path: Path) -> None:
    clock = Clock()
    factory = make_factory(tmp_path, clock, idleTimeout=30, maxActive=1)
    secondary(factory, "s1", [A])
    silent = Peer(factory)
    idle_client = client(factory)
    holder, waiter = client(factory), client(factory)
    holder.send({"type": "admit", "name": "a.bin"})
    waiter.send({"type": "admit", "name": "a.bin"})
    assert waiter.replies()[-1]["type"] == "queued"
    clock.advance(31)
    assert silent.transport.disconnected
    assert idle_client.transport.disconnected
    assert holder.transport.disconnected, "an admitted client must keep talking"
    assert not waiter.transport.disconnected
    holder.hang_up()
    assert waiter.replies()[-1]["type"] == "admitted"


def test_the_catalog_comes_in_pages_that_add_up(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock())
    files = [
        {**A, "name": f"f{i:04d}-" + "x" * 900, "sha256": f"{i:064x}"}
        for i in range(300)
    ]
    for start in range(0, 300, 100):
        secondary(factory, f"s{start}", files[start : start + 100])
    peer = client(factory)
    names: list[str] = []
    pages = 0
    request: dict[str, Any] = {"type": "list"}
    while True:
        peer.send(request)
        data = peer.transport.value()
        assert len(data) < 256 * 1024
        [reply] = frames(data)
        peer.transport.clear()
        pages += 1
        names += [f["name"] for f in reply["files"]]
        if not reply["more"]:
            break
        request = {"type": "list", "after": names[-1]}
    assert pages > 1
    assert names == [f["name"] for f in files]


def test_a_peer_that_keeps_sending_bad_requests_is_hung_up_on(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock())
    peer = client(factory)
    for _ in range(MAX_REFUSALS):
        peer.send({"type": "locate", "name": "../etc/passwd"})
    assert not peer.transport.disconnecting
    assert all(r["code"] == "bad_request" for r in peer.replies())
    peer.send({"type": "locate", "name": "../etc/passwd"})
    assert peer.transport.disconnecting


def test_an_unsolicited_error_is_not_answered(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock())
    peer = Peer(factory)
    peer.protocol.dataReceived(encode({"type": "error", "code": "x"}))
    peer.protocol.dataReceived(encode({"type": "nonsense" * 1000, "id": 3}))
    [reply] = peer.replies()
    assert reply["code"] == "unknown_type" and len(reply["message"]) < 200


def test_hello_with_a_wrong_version_is_refused(tmp_path: Path) -> None:
    peer = Peer(make_factory(tmp_path, Clock()))
    reply = peer.ask({"type": "hello", "version": PROTOCOL_VERSION + 1})
    assert reply["code"] == "version"


def test_complaints_about_one_peer_are_rate_limited() -> None:
    now = [0.0]
    complaints = Complaints(clock=lambda: now[0], perPeer=3, window=60)
    logged: list[dict[str, Any]] = []
    complaints.log = Logger(observer=logged.append)  # type: ignore[misc]
    for _ in range(100):
        complaints.complain("10.0.0.1", "bad frame from {peer}")
    complaints.complain("10.0.0.2", "bad frame from {peer}")
    assert len(logged) == 4
    now[0] = 61
    complaints.complain("10.0.0.1", "bad frame from {peer}")
    assert logged[-2]["count"] == 97
    assert len(logged) == 6


def test_the_client_drops_catalog_names_a_terminal_would_obey() -> None:
    from twisted.internet.defer import Deferred

    from redesdl.client.central import CentralConnection

    connection = CentralConnection("c")
    transport = StringTransport()
    connection.makeConnection(transport)
    listing = Deferred.fromCoroutine(connection.list())
    good = {**A, "sources": 1}
    hostile = {**A, "name": "\x1b]0;owned\x07x.bin", "sources": 1}
    [_, request] = frames(transport.value())
    connection.dataReceived(
        encode({"type": "catalog", "id": request["id"], "files": [hostile, good]})
    )
    assert [entry["name"] for entry in listing.result] == ["a.bin"]
