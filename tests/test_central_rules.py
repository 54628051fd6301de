"""The central's state rules (issue 10, point 7): slots, tickets, complaints, names.

Each test here failed on the central before its session became a machine.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from redesdl.central import services
from redesdl.protocol.auth import ClusterSecret
from redesdl.protocol.wire import PROTOCOL_VERSION

from .test_central import A, B, Peer, client, make_factory, secondary

REPORT = {"type": "report", "name": "a.bin", "ok": True, "size": 10}


def done(name: str = "a.bin", **extra: Any) -> dict[str, Any]:
    return {**REPORT, "name": name, "bytes_fetched": 10, "reason": "", **extra}


@pytest.fixture
def logged() -> Any:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def count_releases(factory: Any) -> Counter[Any]:
    """Count every release of the admission queue, per holder."""
    released: Counter[Any] = Counter()
    release = factory.admission.release

    def counting(holder: Any) -> None:
        released[holder] += 1
        release(holder)

    factory.admission.release = counting
    return released


# -- report is validated before it touches admission ---------------------------


def test_a_report_with_a_bad_field_is_refused_and_the_slot_stays_its_owners(
    tmp_path: Path,
) -> None:
    factory = make_factory(tmp_path, Clock(), maxActive=1)
    secondary(factory, "s1", [A])
    alice, bob = client(factory), client(factory, "bob", "token-of-bob-0000")
    assert alice.ask({"type": "admit", "name": "a.bin"})["type"] == "admitted"
    bob.send({"type": "admit", "name": "a.bin"})
    assert bob.replies()[-1]["type"] == "queued"
    assert alice.ask(done(bytes_fetched="lots"))["code"] == "bad_request"
    assert [t.client for t in factory.admission.active] == ["alice"]
    assert bob.replies() == []
    alice.send(done())
    assert alice.replies() == []
    assert bob.replies()[-1]["type"] == "admitted"
    assert factory.stats.data["files"]["a.bin"]["completed"] == 1


# -- every way a connection ends releases its slot exactly once ----------------


def test_report_then_hang_up_releases_once(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock())
    secondary(factory, "s1", [A])
    released = count_releases(factory)
    alice = client(factory)
    alice.ask({"type": "admit", "name": "a.bin"})
    alice.send(done())
    alice.hang_up()
    assert released[alice.protocol] == 1


@pytest.mark.parametrize("how", ["hang_up", "silence", "queued_hang_up", "taken_back"])
def test_every_end_releases_once(tmp_path: Path, how: str) -> None:
    clock = Clock()
    factory = make_factory(tmp_path, clock, maxActive=1, idleTimeout=60)
    secondary(factory, "s1", [A])
    released = count_releases(factory)
    first, second = client(factory), client(factory, "bob", "token-of-bob-0000")
    first.ask({"type": "admit", "name": "a.bin"})
    second.ask({"type": "admit", "name": "a.bin"})
    if how == "hang_up":
        first.hang_up()
    elif how == "silence":
        for _ in range(25):
            clock.advance(2.9)
            first.send({"type": "locate", "name": "a.bin"})
        clock.advance(61)
        assert first.transport.disconnected
        first.hang_up()
    elif how == "queued_hang_up":
        second.hang_up()
        assert released[second.protocol] == 1
        first.hang_up()
    else:
        clock.advance(30)
        assert first.replies()[-1]["code"] == "slot_expired"
        first.hang_up()
    assert released[first.protocol] == 1
    assert len(factory.admission.active) <= 1


# -- a slot nobody downloads with is taken back --------------------------------


def test_a_slot_without_locates_is_taken_back_and_the_next_client_goes(
    tmp_path: Path,
) -> None:
    clock = Clock()
    factory = make_factory(tmp_path, clock, maxActive=1)
    secondary(factory, "s1", [A])
    hoarder, waiter = client(factory), client(factory, "bob", "token-of-bob-0000")
    admit_id = hoarder.ids + 1
    assert hoarder.ask({"type": "admit", "name": "a.bin"})["type"] == "admitted"
    waiter.send({"type": "admit", "name": "a.bin"})
    for _ in range(5):
        clock.advance(5)
        hoarder.send({"type": "ping"})
    assert waiter.replies()[-1]["type"] == "queued"
    clock.advance(5)
    [*_, error] = hoarder.replies()
    assert (error["type"], error["code"], error["id"]) == (
        "error",
        "slot_expired",
        admit_id,
    )
    assert waiter.replies()[-1]["type"] == "admitted"
    assert [t.client for t in factory.admission.active] == ["bob"]
    hoarder.send(done())
    assert hoarder.replies() == [], "a late report still counts, once"
    assert hoarder.ask(done())["code"] == "bad_request"
    assert factory.stats.data["files"]["a.bin"]["completed"] == 1
    assert [t.client for t in factory.admission.active] == ["bob"]


def test_a_downloading_client_keeps_its_slot(tmp_path: Path) -> None:
    clock = Clock()
    factory = make_factory(
        tmp_path, clock, maxActive=1, slotIdleTimeout=10, heartbeatTimeout=1000
    )
    secondary(factory, "s1", [A, B])
    alice = client(factory)
    alice.ask({"type": "admit", "name": "a.bin"})
    for _ in range(40):
        clock.advance(3)
        assert alice.ask({"type": "locate", "name": "a.bin"})["type"] == "located"
    assert [t.client for t in factory.admission.active] == ["alice"]
    for _ in range(4):
        clock.advance(3)
        alice.ask({"type": "locate", "name": "dir/b.bin"})
    assert alice.replies() == [] and factory.admission.active == []


# -- tickets only with a slot for that file ------------------------------------


def test_tickets_only_for_the_file_whose_slot_the_client_holds(
    tmp_path: Path,
) -> None:
    secret = ClusterSecret(b"s" * 32)
    factory = make_factory(tmp_path, Clock(), maxActive=1, secret=secret)
    factory.secret = None  # register secondaries without the challenge
    secondary(factory, "s1", [A, B])
    secondary(factory, "s2", [A, B])
    factory.secret = secret
    alice, bob = client(factory), client(factory, "bob", "token-of-bob-0000")
    assert "ticket" not in alice.ask({"type": "locate", "name": "a.bin"})
    alice.ask({"type": "admit", "name": "a.bin"})
    bob.ask({"type": "admit", "name": "a.bin"})
    assert "ticket" not in bob.ask({"type": "locate", "name": "a.bin"})
    assert "ticket" in alice.ask({"type": "locate", "name": "a.bin"})
    assert "ticket" not in alice.ask({"type": "locate", "name": "dir/b.bin"})
    alice.send(done())
    assert "ticket" not in alice.ask({"type": "locate", "name": "a.bin"})
    assert "ticket" in bob.ask({"type": "locate", "name": "a.bin"})


# -- bad_replica only from a downloader, once per source, rate-limited ---------


def verifies(peer: Peer) -> list[dict[str, Any]]:
    return [m for m in peer.replies() if m["type"] == "verify"]


def complain(peer: Peer, source: str, name: str = "a.bin") -> None:
    sha256 = A["sha256"] if name == "a.bin" else B["sha256"]
    peer.send({"type": "bad_replica", "name": name, "sha256": sha256, "source": source})


def test_only_a_client_downloading_the_file_can_make_a_copy_unavailable(
    tmp_path: Path,
) -> None:
    factory = make_factory(tmp_path, Clock())
    s1 = secondary(factory, "s1", [A, B])
    secondary(factory, "s2", [A, B])
    mallory = client(factory, "mallory", "token-of-mallory0")
    for source in ("s1", "s2"):
        complain(mallory, source)
    assert [r["code"] for r in mallory.replies()] == ["forbidden", "forbidden"]
    mallory.ask({"type": "admit", "name": "dir/b.bin"})
    complain(mallory, "s1")
    assert mallory.replies()[-1]["code"] == "forbidden"
    assert verifies(s1) == []
    located = mallory.ask({"type": "locate", "name": "a.bin"})
    assert sorted(s["name"] for s in located["sources"]) == ["s1", "s2"]


def test_a_downloader_reports_each_source_once_and_at_a_bounded_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "BAD_REPLICA_BURST", 2)
    factory = make_factory(tmp_path, Clock())
    peers = [secondary(factory, f"s{i}", [A]) for i in range(1, 4)]
    alice = client(factory)
    alice.ask({"type": "admit", "name": "a.bin"})
    complain(alice, "s1")
    assert len(verifies(peers[0])) == 1
    factory.registry.cleared(factory.registry.byName("s1"), "a.bin")
    complain(alice, "s1")
    assert verifies(peers[0]) == []
    complain(alice, "s2")
    complain(alice, "s3")
    assert len(verifies(peers[1])) == 1
    assert verifies(peers[2]) == [], "over the rate, s3 stays offered"
    assert alice.replies() == []


# -- names not in the catalog are never recorded -------------------------------


def test_admit_and_report_of_unknown_names_are_refused_and_never_recorded(
    tmp_path: Path, logged: list[dict[str, Any]]
) -> None:
    factory = make_factory(tmp_path, Clock())
    secondary(factory, "s1", [A])
    alice = client(factory)
    made_up = "made-up-" + "x" * 1000
    assert alice.ask({"type": "admit", "name": made_up})["code"] == "not_found"
    assert alice.ask(done(made_up))["code"] == "not_found"
    alice.ask({"type": "admit", "name": "a.bin"})
    assert alice.ask(done(made_up))["code"] == "not_found"
    assert factory.admission.waiting == []
    assert [t.file for t in factory.admission.active] == ["a.bin"]
    assert factory.stats.data["files"] == {} and factory.stats.data["failures"] == []
    assert not [e for e in logged if made_up in formatEvent(e)]


# -- peer names that could not be printed --------------------------------------


def raw_hello(peer: Peer, body: str) -> dict[str, Any]:
    data = body.encode()
    peer.protocol.dataReceived(len(data).to_bytes(4, "big") + data)
    return peer.replies()[-1]


def test_a_lone_surrogate_peer_name_is_refused_and_locate_still_works(
    tmp_path: Path, logged: list[dict[str, Any]]
) -> None:
    factory = make_factory(tmp_path, Clock())
    secondary(factory, "s1", [A])
    rogue = Peer(factory, host="10.0.0.66")
    reply = raw_hello(
        rogue,
        '{"type": "hello", "version": '
        + str(PROTOCOL_VERSION)
        + ', "role": "secondary", "name": "\\ud800",'
        ' "secondary_id": "rogue-0000", "port": 7101}',
    )
    assert reply["code"] == "bad_request"
    assert len(factory.registry.secondaries) == 1
    located = client(factory).ask({"type": "locate", "name": "a.bin"})
    assert located["type"] == "located"
    json.dumps(factory.stats.data, ensure_ascii=False).encode()


@pytest.mark.parametrize("role", ["client", "secondary"])
def test_control_characters_in_a_peer_name_never_reach_stats_or_logs(
    tmp_path: Path, role: str, logged: list[dict[str, Any]]
) -> None:
    factory = make_factory(tmp_path, Clock())
    secondary(factory, "s1", [A])
    evil = "\x1b]0;owned\x07\x1b[31m"
    hello = {
        "type": "hello",
        "version": PROTOCOL_VERSION,
        "role": role,
        "name": evil,
        "token": "token-of-evil-000",
        "secondary_id": "evil-0000",
        "port": 1,
    }
    assert Peer(factory).ask(hello)["code"] == "bad_request"
    assert evil not in json.dumps(factory.stats.data, ensure_ascii=False)
    assert not [e for e in logged if "\x1b" in formatEvent(e)]


def test_a_failure_reason_is_recorded_with_its_escapes_escaped(
    tmp_path: Path, logged: list[dict[str, Any]]
) -> None:
    factory = make_factory(tmp_path, Clock())
    secondary(factory, "s1", [A])
    alice = client(factory)
    alice.ask({"type": "admit", "name": "a.bin"})
    alice.send(done(ok=False, reason="disk \x1b[2J full"))
    [failure] = factory.stats.data["failures"]
    assert failure["reason"] == "disk \\x1b[2J full"
    assert not [e for e in logged if "\x1b" in formatEvent(e)]


def test_the_console_says_what_each_client_is_doing(tmp_path: Path) -> None:
    from redesdl.central.console import CentralCommands

    factory = make_factory(tmp_path, Clock(), maxActive=1)
    secondary(factory, "s1", [A])
    for name in ("ana", "bea", "cid"):
        peer = client(factory, name, f"token-of-{name}-0000")
        if name != "cid":
            peer.send({"type": "admit", "name": "a.bin"})
    lines = CentralCommands(factory).cmd_clients([])
    assert sorted(line.split()[0] + " " + line.split()[-1] for line in lines) == [
        "ana active",
        "bea queued",
        "cid idle",
    ]
