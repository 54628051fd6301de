"""A secondary obeys orders only from a central it registered with (issue 10).

A fake central (a tiny Twisted server on 127.0.0.1) answers a real
in-process secondary that has a cluster secret. It never proves it holds the
secret, yet orders the secondary to copy a file from a source the attacker
controls, or to rehash a file. The secondary must refuse: nothing is fetched,
nothing appears in its data folder, it logs why and does not register.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher

from redesdl.fsutil import write_private_file
from redesdl.manifest import build_manifest
from redesdl.protocol.codec import decode_body, encode
from redesdl.protocol.wire import Activity, Served
from redesdl.secondary import tap as secondary_tap
from redesdl.secondary.centrallink import batches
from redesdl.secondary.chunkserver import ChunkServerFactory

from .inprocess import eventually
from .secondaryparts import fresh_stats, scanned_index

#: What the attacker wants the secondary to fetch and serve.
PAYLOAD = b"attacker's file\n" * 1000

#: Answers of the fake central: (message received, the fake) -> messages to send.
Script = Callable[[dict[str, Any], "FakeCentral"], list[dict[str, Any]]]


class FakeCentral(Protocol):
    """Reads frames, writes whatever its script answers, remembers everything."""

    def __init__(self, script: Script, source: dict[str, Any], info: Any) -> None:
        self.script = script
        self.source = source
        self.info = info
        self.received: list[dict[str, Any]] = []
        self.lost: Deferred[None] = Deferred()
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 4:
            (length,) = struct.unpack_from("!I", self._buffer)
            if len(self._buffer) < 4 + length:
                return
            message = decode_body(self._buffer[4 : 4 + length])
            self._buffer = self._buffer[4 + length :]
            self.received.append(message)
            for answer in self.script(message, self):
                self.transport.write(encode(answer))

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)

    def replicate(self) -> dict[str, Any]:
        return {
            "type": "replicate",
            "file": self.info.to_wire(),
            "sources": [self.source],
        }

    def verify(self) -> dict[str, Any]:
        return {"type": "verify", "name": "mine.bin", "sha256": self.info.sha256}


def bare_replicate(message: dict[str, Any], fake: FakeCentral) -> list[Any]:
    return [fake.replicate()] if message["type"] == "hello" else []


def bare_verify(message: dict[str, Any], fake: FakeCentral) -> list[Any]:
    return [fake.verify()] if message["type"] == "hello" else []


def replicate_before_welcome(message: dict[str, Any], fake: FakeCentral) -> list[Any]:
    if message["type"] == "hello":
        return [{"type": "challenge", "id": message["id"], "nonce": "1" * 32}]
    if message["type"] == "auth":
        return [fake.replicate()]
    return []


def replicate_after_a_forged_proof(
    message: dict[str, Any], fake: FakeCentral
) -> list[Any]:
    if message["type"] == "hello":
        return [{"type": "challenge", "id": message["id"], "nonce": "1" * 32}]
    if message["type"] == "auth":
        forged = {"type": "welcome", "id": message["id"], "version": 1}
        return [{**forged, "proof": "f" * 64}, fake.replicate()]
    return []


class Attack:
    """The attacker's source and central, and the victim secondary's folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "victim-data"
        self.data.mkdir()
        (self.data / "mine.bin").write_bytes(b"the victim's own file\n")
        evil = root / "evil-data"
        evil.mkdir()
        (evil / "planted.bin").write_bytes(PAYLOAD)
        self.info = build_manifest(str(evil / "planted.bin"), "planted.bin").info
        self.source_connections = 0
        self.listening: list[Any] = []
        self.secondary: Any = None
        self.central: FakeCentral | None = None
        self.rechecked: list[str] = []
        self.logged: list[str] = []
        self.evil = evil

    async def start(self, script: Script) -> None:
        index = scanned_index(self.evil, self.root / "evil-index.json")
        stats = fresh_stats(self.root / "evil-stats.json")
        source = ChunkServerFactory(index, "evil", stats, clock=reactor)
        built = source.buildProtocol

        def counting(addr: Any) -> Any:
            self.source_connections += 1
            return built(addr)

        source.buildProtocol = counting  # type: ignore[method-assign]
        source_port = reactor.listenTCP(0, source, interface="127.0.0.1")
        self.listening.append(source_port)
        where = {
            "name": "evil",
            "host": "127.0.0.1",
            "port": source_port.getHost().port,
        }

        def fake() -> FakeCentral:
            central = FakeCentral(script, where, self.info)
            self.central = self.central or central
            return central

        central_port = reactor.listenTCP(
            0, Factory.forProtocol(fake), interface="127.0.0.1"
        )
        self.listening.append(central_port)
        secret = self.root / "cluster.secret"
        write_private_file(str(secret), os.urandom(32))
        options = secondary_tap.Options()
        options.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--central",
                f"127.0.0.1:{central_port.getHost().port}",
                "--data",
                str(self.data),
                "--state-dir",
                str(self.root / "victim-state"),
                "--name",
                "victim",
                "--secret-file",
                str(secret),
            ]
        )
        globalLogPublisher.addObserver(self._log)
        self.secondary = secondary_tap.makeService(options, reactor)
        recheck = self.secondary.index.recheck

        def spy(name: str) -> Any:
            self.rechecked.append(name)
            return recheck(name)

        self.secondary.index.recheck = spy
        self.secondary.startService()

    def _log(self, event: dict[str, Any]) -> None:
        self.logged.append(formatEvent(event))

    async def stop(self) -> None:
        globalLogPublisher.removeObserver(self._log)
        if self.secondary is not None:
            await self.secondary.stopService()
        for port in self.listening:
            await port.stopListening()
        if self.central is not None and self.central.transport is not None:
            self.central.transport.loseConnection()
            await self.central.lost

    async def settle(self) -> None:
        """Wait until the secondary hung up on the fake central, or 3 s passed.

        Three seconds are plenty for an obedient secondary to fetch the file.
        """
        await eventually(lambda: self.central is not None, "the secondary's hello")
        assert self.central is not None
        deadline = reactor.seconds() + 3
        while not self.central.lost.called and reactor.seconds() < deadline:
            await deferLater(reactor, 0.05, lambda: None)
        await deferLater(reactor, 0.3, lambda: None)

    def files_in_data_folder(self) -> list[str]:
        return sorted(
            str(path.relative_to(self.data))
            for path in self.data.rglob("*")
            if path.is_file()
        )

    def received_types(self) -> list[str]:
        assert self.central is not None
        return [message["type"] for message in self.central.received]


@pytest_twisted.async_yield_fixture
async def attack(tmp_path: Path) -> AsyncIterator[Attack]:
    running = Attack(tmp_path)
    try:
        yield running
    finally:
        await running.stop()


def assert_refused(attack: Attack, why: str) -> None:
    assert attack.central is not None and attack.central.lost.called, (
        "the secondary kept the link to a central that gave orders unproven"
    )
    assert attack.files_in_data_folder() == ["mine.bin"]
    assert not attack.secondary.link or not attack.secondary.link.registered
    assert "files_added" not in attack.received_types()
    assert "catalog_done" not in attack.received_types()
    refusals = [line for line in attack.logged if why in line]
    assert refusals, attack.logged
    assert "not registering with the central" in refusals[0]


@pytest.mark.parametrize(
    ("script", "why"),
    [
        (bare_replicate, "sent 'replicate' before it accepted"),
        (replicate_before_welcome, "sent 'replicate' before it accepted"),
        (replicate_after_a_forged_proof, "could not prove it holds the cluster"),
    ],
    ids=["bare", "after_challenge", "after_forged_proof"],
)
@pytest_twisted.ensureDeferred
async def test_a_replicate_from_an_unproven_central_fetches_nothing(
    attack: Attack, script: Script, why: str
) -> None:
    await attack.start(script)
    await attack.settle()
    assert attack.files_in_data_folder() == ["mine.bin"]
    assert attack.source_connections == 0
    assert hashlib.sha256(PAYLOAD).hexdigest() == attack.info.sha256
    assert not any(
        path.read_bytes() == PAYLOAD
        for path in attack.data.rglob("*")
        if path.is_file()
    )
    assert_refused(attack, why)


@pytest_twisted.ensureDeferred
async def test_a_verify_from_an_unproven_central_is_not_obeyed(attack: Attack) -> None:
    await attack.start(bare_verify)
    await attack.settle()
    assert attack.rechecked == []
    assert_refused(attack, "sent 'verify' before it accepted")


def bare_withdraw(message: dict[str, Any], fake: FakeCentral) -> list[Any]:
    if message["type"] != "hello":
        return []
    mine = hashlib.sha256(b"the victim's own file\n").hexdigest()
    return [{"type": "withdraw", "name": "mine.bin", "sha256": mine}]


@pytest_twisted.ensureDeferred
async def test_a_withdraw_from_an_unproven_central_moves_nothing(
    attack: Attack,
) -> None:
    await attack.start(bare_withdraw)
    await attack.settle()
    assert_refused(attack, "sent 'withdraw' before it accepted")


def test_reports_to_the_central_fit_its_frame_whatever_the_names() -> None:
    """256 activity items naming clients of 256 'é' (each 6 bytes as JSON)
    made a 399 KB activity report: the central hung up on the secondary."""
    served = [
        Served("f" * 1000 + str(n), "é" * 250 + f"{n:06d}", 1, 1) for n in range(600)
    ]
    sent = list(batches(served, weigh=Served.to_wire))
    assert [item for batch in sent for item in batch] == served
    for batch in sent:
        assert len(batch) <= 256
        assert len(encode(Activity(tuple(batch)))) < 256 * 1024
    # Small entries still go 256 at a time.
    assert [len(b) for b in batches(list(range(600)), weigh=str)] == [256, 256, 88]
