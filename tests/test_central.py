"""The central: roles, merged catalog, conflicts, readiness, replication plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from redesdl.central.protocol import CentralFactory
from redesdl.central.stats import CentralStats, fresh_central_stats
from redesdl.protocol.wire import PROTOCOL_VERSION
from redesdl.stats import StatsFile

from .wire import frames, send

A = {"name": "a.bin", "size": 10, "sha256": "a" * 64, "root": "1" * 64}
A_OTHER = {**A, "sha256": "b" * 64}
B = {"name": "dir/b.bin", "size": 20, "sha256": "c" * 64, "root": "2" * 64}


class Peer:
    """One connection to the central over a StringTransport."""

    def __init__(self, factory: CentralFactory, host: str = "10.0.0.1") -> None:
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=_Address(host))
        self.protocol.makeConnection(self.transport)
        self.ids = 0

    def send(self, message: dict[str, Any]) -> None:
        self.ids += 1
        send(self.protocol, {"id": self.ids, **message})

    def replies(self) -> list[dict[str, Any]]:
        out = frames(self.transport.value())
        self.transport.clear()
        return out

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        return self.replies()[-1]

    def hang_up(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionError("gone")))


class _Address:
    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 40000


def secondary(
    factory: CentralFactory, name: str, files: list[dict], **extra: Any
) -> Peer:
    peer = Peer(factory, host=f"10.0.0.{len(factory.registry.secondaries) + 1}")
    reply = peer.ask(
        {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "role": "secondary",
            "name": name,
            "secondary_id": f"id-{name}-0000",
            "port": 7101,
            **extra,
        }
    )
    assert reply["type"] == "welcome", reply
    peer.send({"type": "files_added", "files": files})
    peer.send({"type": "catalog_done"})
    return peer


def client(
    factory: CentralFactory, name: str = "alice", token: str = "token-of-alice-00"
) -> Peer:
    peer = Peer(factory)
    peer.ask(
        {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "role": "client",
            "name": name,
            "token": token,
        }
    )
    return peer


def make_factory(tmp_path: Path, clock: Clock, **options: Any) -> CentralFactory:
    stats = StatsFile(
        FilePath(str(tmp_path / "stats.json")), "test", fresh_central_stats, clock
    )
    return CentralFactory(clock, CentralStats(stats), **options)


@pytest.fixture
def factory(tmp_path: Path) -> CentralFactory:
    return make_factory(tmp_path, Clock())


def test_catalog_lists_each_name_once_with_its_sources(factory: CentralFactory) -> None:
    secondary(factory, "s1", [A, B])
    secondary(factory, "s2", [A])
    files = client(factory).ask({"type": "list"})["files"]
    assert [(f["name"], f["sources"]) for f in files] == [
        ("a.bin", 2),
        ("dir/b.bin", 1),
    ]


def test_locate_gives_the_addresses_clients_should_use(factory: CentralFactory) -> None:
    secondary(factory, "s1", [A])
    secondary(factory, "s2", [A], advertise="files.example:9000")
    located = client(factory).ask({"type": "locate", "name": "a.bin"})
    assert located["file"] == A
    assert sorted((s["name"], s["host"], s["port"]) for s in located["sources"]) == [
        ("s1", "10.0.0.1", 7101),
        ("s2", "files.example", 9000),
    ]


def test_disagreeing_replicas_serve_the_majority_only(
    factory: CentralFactory, no_logged_errors: list
) -> None:
    secondary(factory, "s1", [A_OTHER])
    secondary(factory, "s2", [A])
    secondary(factory, "s3", [A])
    located = client(factory).ask({"type": "locate", "name": "a.bin"})
    assert located["file"]["sha256"] == A["sha256"]
    assert sorted(s["name"] for s in located["sources"]) == ["s2", "s3"]


def test_unknown_file_and_gone_sources_are_typed_errors(
    factory: CentralFactory,
) -> None:
    holder = secondary(factory, "s1", [A])
    alice = client(factory)
    assert alice.ask({"type": "locate", "name": "nope"})["code"] == "not_found"
    holder.hang_up()
    assert alice.ask({"type": "locate", "name": "a.bin"})["code"] == "no_source"
    # A name nobody holds leaves the listing; locate still says its holders
    # may come back (no_source), not that it never existed.
    assert alice.ask({"type": "list"})["files"] == []


def test_min_secondaries_holds_downloads_back(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock(), minSecondaries=2)
    secondary(factory, "s1", [A])
    reply = client(factory).ask({"type": "locate", "name": "a.bin"})
    assert reply["code"] == "not_ready" and "2 secondaries" in reply["message"]
    secondary(factory, "s2", [])
    assert client(factory).ask({"type": "locate", "name": "a.bin"})["type"] == "located"


def test_clients_cannot_report_files(factory: CentralFactory) -> None:
    reply = client(factory).ask({"type": "files_added", "files": [A]})
    assert reply["code"] == "forbidden"
    assert factory.registry.secondaries == {}


def test_nothing_before_hello(factory: CentralFactory) -> None:
    assert Peer(factory).ask({"type": "list"})["code"] == "hello_first"


def test_a_second_name_holder_is_refused_but_the_same_id_replaces(
    factory: CentralFactory,
) -> None:
    first = secondary(factory, "s1", [A])
    intruder = Peer(factory)
    reply = intruder.ask(
        {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "role": "secondary",
            "name": "s1",
            "secondary_id": "another-id",
            "port": 1,
        }
    )
    assert reply["code"] == "name_taken"
    secondary(factory, "s1", [A])
    assert first.transport.disconnecting
    assert len(factory.registry.secondaries) == 1


def test_malformed_file_reports_are_refused(factory: CentralFactory) -> None:
    peer = secondary(factory, "s1", [])
    peer.send({"type": "files_added", "files": [{**A, "name": "../../etc/passwd"}]})
    assert peer.replies()[-1]["code"] == "bad_request"
    peer.send({"type": "files_added", "files": [{**A, "size": "big"}]})
    assert peer.replies()[-1]["code"] == "bad_request"
    assert factory.registry.catalog() == []


def test_planner_asks_each_secondary_for_what_it_lacks(tmp_path: Path) -> None:
    clock = Clock()
    factory = make_factory(tmp_path, clock)
    s1 = secondary(factory, "s1", [A, B])
    s2 = secondary(factory, "s2", [])
    clock.advance(0)
    asked = [m for m in s2.replies() if m["type"] == "replicate"]
    assert sorted(m["file"]["name"] for m in asked) == ["a.bin", "dir/b.bin"]
    assert asked[0]["sources"][0]["name"] == "s1"
    assert [m for m in s1.replies() if m["type"] == "replicate"] == []
    s2.send({"type": "replicated", "name": "a.bin", "ok": False, "reason": "disk full"})
    clock.advance(0)
    assert [m for m in s2.replies() if m["type"] == "replicate"] == []
    clock.advance(10)
    again = [m for m in s2.replies() if m["type"] == "replicate"]
    assert [m["file"]["name"] for m in again] == ["a.bin"]


def test_planner_never_asks_to_overwrite_a_different_content(tmp_path: Path) -> None:
    clock = Clock()
    factory = make_factory(tmp_path, clock)
    secondary(factory, "s1", [A])
    s2 = secondary(factory, "s2", [A_OTHER])
    clock.advance(0)
    assert [m for m in s2.replies() if m["type"] == "replicate"] == []


def test_planner_waits_for_a_secondary_to_finish_reporting(tmp_path: Path) -> None:
    clock = Clock()
    factory = make_factory(tmp_path, clock)
    secondary(factory, "s1", [A])
    s2 = Peer(factory, host="10.0.0.9")
    s2.ask(
        {
            "type": "hello",
            "version": PROTOCOL_VERSION,
            "role": "secondary",
            "name": "s2",
            "secondary_id": "id-s2-0000",
            "port": 7101,
        }
    )
    clock.advance(0)
    assert [m for m in s2.replies() if m["type"] == "replicate"] == []
    s2.send({"type": "files_added", "files": [A]})
    s2.send({"type": "catalog_done"})
    clock.advance(0)
    assert [m for m in s2.replies() if m["type"] == "replicate"] == []


def test_reports_count_per_file_and_client_and_free_the_slot(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock(), maxActive=1)
    secondary(factory, "s1", [A])
    first, second = client(factory), client(factory)
    assert first.ask({"type": "admit", "name": "a.bin"})["type"] == "admitted"
    second.send({"type": "admit", "name": "a.bin"})
    assert second.replies() == [{"type": "queued", "id": 2, "position": 1}]
    first.send(
        {
            "type": "report",
            "name": "a.bin",
            "ok": True,
            "size": 10,
            "bytes_fetched": 10,
            "reason": "",
        }
    )
    assert second.replies()[0]["type"] == "admitted"
    second.send(
        {
            "type": "report",
            "name": "a.bin",
            "ok": False,
            "size": 10,
            "bytes_fetched": 4,
            "reason": "no live source",
        }
    )
    data = factory.stats.data
    assert data["files"]["a.bin"] == {"completed": 1, "failed": 1, "bytes": 14}
    assert data["clients"]["alice"]["completed"] == 1
    assert data["failures"][0]["reason"] == "no live source"


def test_one_slot_per_connection_and_reports_only_for_it(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock(), maxActive=5)
    secondary(factory, "s1", [A])
    greedy = client(factory)
    assert greedy.ask({"type": "admit", "name": "a.bin"})["type"] == "admitted"
    assert greedy.ask({"type": "admit", "name": "a.bin"})["code"] == "bad_request"
    forged = client(factory)
    forged.send(
        {
            "type": "report",
            "name": "a.bin",
            "ok": True,
            "size": 10,
            "bytes_fetched": 10,
            "reason": "",
        }
    )
    assert forged.replies()[-1]["code"] == "bad_request"
    assert factory.stats.data["files"] == {}
    assert len(factory.admission.active) == 1


def test_a_silent_secondary_is_dropped_but_a_pinging_one_stays(tmp_path: Path) -> None:
    clock = Clock()
    factory = make_factory(tmp_path, clock, heartbeatTimeout=15)
    silent = secondary(factory, "s1", [A])
    alive = secondary(factory, "s2", [A])
    for _ in range(4):
        clock.advance(5)
        alive.send({"type": "ping"})
        assert alive.replies()[-1]["type"] == "pong"
    assert silent.transport.disconnected
    assert not alive.transport.disconnecting
    silent.hang_up()
    located = client(factory).ask({"type": "locate", "name": "a.bin"})
    assert [s["name"] for s in located["sources"]] == ["s2"]
    assert factory.registry.secondaries["id-s2-0000"].lastHeard == 20


def test_a_reconnecting_secondary_replaces_its_entry_and_the_old_link_learns_it(
    tmp_path: Path,
) -> None:
    factory = make_factory(tmp_path, Clock())
    old = secondary(factory, "s1", [A], boot=1)
    new = secondary(factory, "s1", [A], boot=2)
    assert old.transport.disconnecting
    assert [r.boot for r in factory.registry.secondaries.values()] == [2]
    old.send({"type": "ping"})
    assert old.replies()[-1]["code"] == "not_registered"
    new.send({"type": "ping"})
    assert new.replies()[-1]["type"] == "pong"


def test_a_reported_replica_is_checked_not_removed(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock())
    s1 = secondary(factory, "s1", [A])
    s2 = secondary(factory, "s2", [A])
    alice = client(factory)
    # Only a client downloading the file may report its copies (issue 10).
    assert alice.ask({"type": "admit", "name": "a.bin"})["type"] == "admitted"
    alice.send(
        {"type": "bad_replica", "name": "a.bin", "sha256": A["sha256"], "source": "s2"}
    )
    assert {"type": "verify", "name": "a.bin", "sha256": A["sha256"]} in s2.replies()
    assert s1.replies() == [] or all(m["type"] != "verify" for m in s1.replies())
    located = alice.ask({"type": "locate", "name": "a.bin"})
    assert [s["name"] for s in located["sources"]] == ["s1"]
    assert len(factory.registry.secondaries) == 2
    s2.send({"type": "verified", "name": "a.bin", "ok": True})
    located = alice.ask({"type": "locate", "name": "a.bin"})
    assert sorted(s["name"] for s in located["sources"]) == ["s1", "s2"]


def test_only_clients_report_bad_replicas_and_only_of_real_copies(
    tmp_path: Path,
) -> None:
    factory = make_factory(tmp_path, Clock())
    s1 = secondary(factory, "s1", [A])
    s1.send(
        {"type": "bad_replica", "name": "a.bin", "sha256": A["sha256"], "source": "s1"}
    )
    assert s1.replies()[-1]["code"] == "forbidden"
    client(factory).send(
        {"type": "bad_replica", "name": "a.bin", "sha256": "f" * 64, "source": "s1"}
    )
    assert factory.registry.secondaries["id-s1-0000"].suspect == set()
