"""Who may join and what a client may claim: the cluster secret, tokens, tickets."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from redesdl.client.access import load_client_token
from redesdl.client.errors import UserError
from redesdl.protocol.auth import ClusterSecret, SecretFileError, load_secret
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.tickets import Tickets
from redesdl.protocol.wire import PROTOCOL_VERSION
from redesdl.secondary.centrallink import CentralLinkProtocol

from .test_central import A, Peer, client, make_factory
from .wire import frames, send

SECRET = ClusterSecret(b"s" * 32)


def hello(peer: Peer, nonce: str | None = "0" * 32, sid: str = "id-s1") -> Any:
    message = {
        "type": "hello",
        "version": PROTOCOL_VERSION,
        "role": "secondary",
        "name": "s1",
        "secondary_id": sid,
        "port": 7101,
    }
    if nonce is not None:
        message["nonce"] = nonce
    return peer.ask(message)


def join(peer: Peer, secret: ClusterSecret, theirs: str = "0" * 32) -> Any:
    challenge = hello(peer, theirs)
    assert challenge["type"] == "challenge"
    proof = secret.mac("secondary", challenge["nonce"], theirs, "id-s1")
    return challenge, peer.ask({"type": "auth", "proof": proof})


def test_a_secondary_with_the_secret_joins_and_the_central_proves_itself(
    tmp_path: Path,
) -> None:
    factory = make_factory(tmp_path, Clock(), secret=SECRET)
    peer = Peer(factory)
    challenge, welcome = join(peer, SECRET)
    assert welcome["type"] == "welcome"
    assert SECRET.verify(welcome["proof"], "central", "0" * 32, challenge["nonce"])
    assert [r.name for r in factory.registry.secondaries.values()] == ["s1"]


def test_wrong_or_missing_secret_is_refused_and_never_listed(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock(), secret=SECRET)
    wrong = Peer(factory)
    _, reply = join(wrong, ClusterSecret(b"x" * 32))
    assert reply["code"] == "unauthenticated"
    assert "wrong cluster secret" in reply["message"]
    assert wrong.transport.disconnecting
    none = Peer(factory)
    reply = hello(none, nonce=None)
    assert reply["code"] == "unauthenticated" and "--secret-file" in reply["message"]
    assert factory.registry.secondaries == {}
    assert client(factory).ask({"type": "list"})["files"] == []


def test_a_recorded_answer_fails_on_a_new_connection(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock(), secret=SECRET)
    first = Peer(factory)
    challenge, _ = join(first, SECRET)
    replayed_proof = SECRET.mac("secondary", challenge["nonce"], "0" * 32, "id-s1")
    second = Peer(factory, host="10.0.0.2")
    assert hello(second)["nonce"] != challenge["nonce"]
    reply = second.ask({"type": "auth", "proof": replayed_proof})
    assert reply["code"] == "unauthenticated"


def test_an_unauthenticated_secondary_may_not_report(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock(), secret=SECRET)
    peer = Peer(factory)
    hello(peer)
    reply = peer.ask({"type": "files_added", "files": [A]})
    assert reply["code"] == "hello_first"
    assert factory.registry.secondaries == {}


def test_a_client_cannot_report_under_another_clients_name(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock(), maxActive=5)
    from .test_central import secondary

    secondary(factory, "s1", [A])
    alice = client(factory, "alice", token="alice-token-0123456789")
    alice.send({"type": "admit", "name": "a.bin"})
    alice.send(
        {"type": "report", "name": "a.bin", "ok": True, "size": 10, "bytes_fetched": 10}
    )
    impostor = Peer(factory)
    reply = impostor.ask(
        {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "role": "client",
            "name": "alice",
            "token": "mallory-token-0123456789",
        }
    )
    assert reply["code"] == "client_name_taken"
    assert factory.stats.data["clients"]["alice"]["completed"] == 1
    assert client(factory, "alice", token="alice-token-0123456789").replies() == []


def test_tickets_name_one_file_one_holder_and_expire() -> None:
    tickets = Tickets(SECRET)
    ticket = tickets.issue("a" * 64, "alice", 100)
    tickets.check(ticket, "a" * 64, "alice", 99)
    for sha, holder, now, code in [
        ("b" * 64, "alice", 99, "ticket_invalid"),
        ("a" * 64, "bob", 99, "ticket_invalid"),
        ("a" * 64, "alice", 100, "ticket_expired"),
    ]:
        with pytest.raises(ProtocolError) as caught:
            tickets.check(ticket, sha, holder, now)
        assert caught.value.code == code
    with pytest.raises(ProtocolError) as caught:
        tickets.check(None, "a" * 64, "alice", 0)
    assert caught.value.code == "ticket_required"
    for garbage in ("\x80", "é" * 64, 7, None):
        assert not SECRET.verify(garbage, "central")
    forged = dataclasses.replace(ticket, expires=10**9)
    with pytest.raises(ProtocolError) as caught:
        tickets.check(forged, "a" * 64, "alice", 99)
    assert caught.value.code == "ticket_invalid"
    other = Tickets(ClusterSecret(b"o" * 32)).issue("a" * 64, "alice", 100)
    with pytest.raises(ProtocolError):
        tickets.check(other, "a" * 64, "alice", 99)


def test_a_secret_file_must_be_private_and_long_enough(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("x" * 40 + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        load_secret(str(path))
    os.chmod(path, 0o600)
    assert load_secret(str(path)).mac("p") == ClusterSecret(b"x" * 40).mac("p")
    path.write_text("short")
    with pytest.raises(SecretFileError, match="fewer than 16 bytes"):
        load_secret(str(path))
    with pytest.raises(SecretFileError, match="cannot read"):
        load_secret(str(tmp_path / "missing"))


class FakeSecondary:
    """What the central link needs of its secondary, and what it told it."""

    def __init__(self, secret: ClusterSecret | None) -> None:
        self.reactor = Clock()
        self.secret = secret
        self.name, self.secondaryId, self.boot, self.advertise = "s1", "id-s1", 1, None
        self.heartbeatInterval, self.heartbeatTimeout = 5.0, 15.0
        self.index = SimpleNamespace(manifests=lambda: [])
        self.refusals = 0
        self.up: list[Any] = []
        self.orders: list[Any] = []
        self.replicator = SimpleNamespace(
            replicate=lambda *order: self.orders.append(("replicate", *order))
        )

    def checkCopy(self, name: str) -> None:
        self.orders.append(("verify", name))

    def listeningPort(self) -> int:
        return 7101

    def linkUp(self, link: Any) -> None:
        self.up.append(link)

    def linkDown(self, link: Any) -> None:
        pass

    def centralRefused(self) -> None:
        self.refusals += 1


def link_to(secret: ClusterSecret | None) -> tuple[Any, StringTransport, FakeSecondary]:
    secondary = FakeSecondary(secret)
    link = CentralLinkProtocol(secondary, secondary)  # type: ignore[arg-type]
    transport = StringTransport()
    link.makeConnection(transport)
    return link, transport, secondary


def test_a_secondary_refuses_a_central_that_cannot_prove_the_secret() -> None:
    link, transport, secondary = link_to(SECRET)
    [hello_sent] = frames(transport.value())
    transport.clear()
    send(link, {"type": "challenge", "id": hello_sent["id"], "nonce": "1" * 32})
    [auth] = frames(transport.value())
    assert SECRET.verify(
        auth["proof"], "secondary", "1" * 32, hello_sent["nonce"], "id-s1"
    )
    forged = ClusterSecret(b"f" * 32).mac("central", hello_sent["nonce"], "1" * 32)
    send(link, {"type": "welcome", "id": auth["id"], "version": 1, "proof": forged})
    assert transport.disconnecting and secondary.refusals == 1
    assert not link.registered and secondary.up == []


def test_a_secondary_joins_a_central_that_proves_the_secret() -> None:
    link, transport, secondary = link_to(SECRET)
    [hello_sent] = frames(transport.value())
    transport.clear()
    send(link, {"type": "challenge", "id": hello_sent["id"], "nonce": "1" * 32})
    [auth] = frames(transport.value())
    proof = SECRET.mac("central", hello_sent["nonce"], "1" * 32)
    send(link, {"type": "welcome", "id": auth["id"], "version": 1, "proof": proof})
    assert link.registered and secondary.up == [link]
    link.connectionLost(Failure(ConnectionDone()))


def test_a_secondary_with_a_secret_refuses_an_open_central() -> None:
    link, transport, secondary = link_to(SECRET)
    [hello_sent] = frames(transport.value())
    send(link, {"type": "welcome", "id": hello_sent["id"], "version": 1})
    assert transport.disconnecting and secondary.refusals == 1
    assert not link.registered


REPLICATE = {
    "type": "replicate",
    "file": A,
    "sources": [{"name": "evil", "host": "127.0.0.1", "port": 9}],
}


def test_a_secondary_obeys_orders_only_after_the_central_proved_itself() -> None:
    link, transport, secondary = link_to(SECRET)
    [hello_sent] = frames(transport.value())
    send(link, {"type": "challenge", "id": hello_sent["id"], "nonce": "1" * 32})
    send(link, REPLICATE, {"type": "verify", "name": "a.bin", "sha256": "a" * 64})
    assert secondary.orders == [] and secondary.refusals == 1
    assert transport.disconnecting and not link.registered

    link, transport, secondary = link_to(SECRET)
    [hello_sent] = frames(transport.value())
    transport.clear()
    send(link, {"type": "challenge", "id": hello_sent["id"], "nonce": "1" * 32})
    [auth] = frames(transport.value())
    proof = SECRET.mac("central", hello_sent["nonce"], "1" * 32)
    send(
        link,
        {"type": "welcome", "id": auth["id"], "version": 1, "proof": proof},
        REPLICATE,
        {"type": "verify", "name": "a.bin", "sha256": "a" * 64},
    )
    assert [order[0] for order in secondary.orders] == ["replicate", "verify"]
    assert not transport.disconnecting
    link.connectionLost(Failure(ConnectionDone()))


def test_a_registered_secondary_answers_a_malformed_order_and_stays() -> None:
    link, transport, _ = link_to(None)
    [hello_sent] = frames(transport.value())
    send(link, {"type": "welcome", "id": hello_sent["id"], "version": 1})
    transport.clear()
    send(link, {"type": "replicate", "file": A})
    [refusal] = frames(transport.value())
    assert refusal["type"] == "error" and refusal["code"] == "bad_request"
    assert link.registered and not transport.disconnecting
    link.connectionLost(Failure(ConnectionDone()))


def test_a_client_keeps_one_private_token_and_repairs_a_torn_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "client-token"
    token = load_client_token(path)
    assert len(token) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_client_token(path) == token
    path.write_text("")
    repaired = load_client_token(path)
    assert len(repaired) == 64 and repaired != token
    assert load_client_token(path) == repaired
    assert [p.name for p in tmp_path.iterdir()] == ["client-token"]


@pytest.mark.parametrize(
    "content", [b"\xff" * 64, b"a" * 200, b"ok" * 20 + b"\x1b[2J", "é".encode() * 40]
)
def test_a_token_file_that_is_not_one_of_ours_is_named_not_replaced(
    tmp_path: Path, content: bytes
) -> None:
    """Replacing it would lose the client's name at the central; it once
    failed every command with a UnicodeDecodeError, or with the central's
    refusal of a token over 128 characters, naming no file."""
    path = tmp_path / "client-token"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"does not hold a client token.*remove it"):
        load_client_token(path)
    assert path.read_bytes() == content
