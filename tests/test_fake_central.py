"""A client facing a fake central: the output name is the user's, not the
central's, and a job stopped after its admission but before its download
began is recorded once, by ``get`` and by a closing console alike."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from redesdl.client.access import ClusterAccess
from redesdl.client.central import (
    BadCentralReplyError,
    CentralBusyError,
    CentralConnection,
    CentralSilentError,
)
from redesdl.client.job import GetJob, InterruptedByUserError
from redesdl.client.reasons import EXIT_CENTRAL_UNREACHABLE, exit_status
from redesdl.client.stats import ClientStats
from redesdl.endpoints import central_endpoint
from redesdl.protocol.codec import FrameDecoder, MessageReceived, encode
from redesdl.protocol.wire import CENTRAL_INBOUND, Admit

from .clientstats import client_stats
from .rogue import Full

SHA = "ab" * 32


def file_reply(message: Any, name: str) -> dict[str, Any]:
    """The reply to a locate or admit, for a 1-byte file called C{name}."""
    return {
        "type": "located" if message.TYPE == "locate" else "admitted",
        "id": message.id,
        "file": {"name": name, "size": 1, "sha256": SHA, "root": SHA},
        "sources": [],
        "queued_seconds": 0,
    }


class ScriptedCentral(Protocol):
    """Welcomes anyone; each later message gets what L{answer} says, if any."""

    def connectionMade(self) -> None:
        self.decoder = FrameDecoder(CENTRAL_INBOUND, 1 << 16)

    def dataReceived(self, data: bytes) -> None:
        for event in self.decoder.feed(data):
            if not isinstance(event, MessageReceived):
                continue
            message: Any = event.message
            if message.TYPE == "hello":
                reply = {"type": "welcome", "id": message.id, "version": 1}
            else:
                reply = self.answer(message)
            if reply is not None:
                self.transport.write(encode(reply))

    def answer(self, message: Any) -> dict[str, Any] | None:
        raise NotImplementedError


class LyingCentral(ScriptedCentral):
    """Locates every file as C{evil.bin}."""

    def answer(self, message: Any) -> dict[str, Any] | None:
        if message.TYPE in ("locate", "admit"):
            return file_reply(message, "evil.bin")
        return None


class SilentAfterAdmission(ScriptedCentral):
    """Locates and admits the file asked for, then never answers again."""

    locates = 0

    def answer(self, message: Any) -> dict[str, Any] | None:
        if message.TYPE == "admit" or (message.TYPE == "locate" and not self.locates):
            self.locates += message.TYPE == "locate"
            return file_reply(message, message.name)
        if not self.factory.unanswered.called:
            self.factory.unanswered.callback(message.TYPE)
        return None


async def listen(protocol: type[Protocol]) -> Any:
    factory = Factory.forProtocol(protocol)
    #: Fires with the type of the first message left unanswered.
    factory.unanswered = Deferred()
    return await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)


@pytest_twisted.async_yield_fixture
async def central_port() -> AsyncIterator[int]:
    port = await listen(LyingCentral)
    try:
        yield port.getHost().port
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_central_answering_for_another_file_writes_nothing(
    central_port: int, tmp_path: Path
) -> None:
    job = GetJob(
        reactor,
        ClusterAccess(central_endpoint(reactor, f"127.0.0.1:{central_port}")),
        "tester",
        "clip.mp4",
        str(tmp_path),
        retryFor=0,
    )
    with pytest.raises(BadCentralReplyError, match=r"answered for 'evil\.bin'"):
        await job.run()
    assert os.listdir(tmp_path) == []


async def stopped_after_admission(
    tmp_path: Path, stop: Callable[[GetJob], Deferred[Any]]
) -> list[dict[str, Any]]:
    """Run a job against L{SilentAfterAdmission}, C{stop} it once admitted
    and locating again, and return the downloads its statistics recorded."""
    port = await listen(SilentAfterAdmission)
    stats_path = tmp_path / "stats.sqlite"
    stats = ClientStats(str(stats_path))
    try:
        job = GetJob(
            reactor,
            ClusterAccess(
                central_endpoint(reactor, f"127.0.0.1:{port.getHost().port}")
            ),
            "tester",
            "clip.mp4",
            str(tmp_path),
            stats=stats,
        )
        outcome: list[Any] = []
        job.start().addBoth(outcome.append)
        # Admitted, and locating again for fresh sources: no download yet.
        assert await port.factory.unanswered == "locate"
        assert job.download is None
        await stop(job)
        assert isinstance(outcome[0].value, InterruptedByUserError)
    finally:
        stats.close()
        await port.stopListening()
    return client_stats(stats_path)["downloads"]


def assert_recorded_as_interrupted(
    downloads: list[dict[str, Any]], tmp_path: Path
) -> None:
    [record] = downloads
    assert record["file"] == "clip.mp4"
    assert record["path"] == str(tmp_path / "clip.mp4")
    assert (record["result"], record["reason"]) == ("failed", "interrupted")
    assert record["bytes_fetched"] == 0


@pytest_twisted.ensureDeferred
async def test_a_get_stopped_after_its_admission_is_recorded_as_interrupted(
    tmp_path: Path,
) -> None:
    downloads = await stopped_after_admission(tmp_path, GetJob.stop)
    assert_recorded_as_interrupted(downloads, tmp_path)


@pytest_twisted.ensureDeferred
async def test_a_console_closing_after_an_admission_records_it_once(
    tmp_path: Path,
) -> None:
    def close_console(job: GetJob) -> Deferred[None]:
        # What the console does as it closes; then the reactor stops, and
        # the job never runs again: the record must be there already.
        job.interrupted()
        assert_recorded_as_interrupted(
            client_stats(tmp_path / "stats.sqlite")["downloads"], tmp_path
        )
        return job.stop()

    downloads = await stopped_after_admission(tmp_path, close_console)
    assert_recorded_as_interrupted(downloads, tmp_path)


class Mute(ScriptedCentral):
    """Welcomes, then answers nothing."""

    def answer(self, message: Any) -> dict[str, Any] | None:
        if not self.factory.unanswered.called:
            self.factory.unanswered.callback(message.TYPE)
        return None


async def failed_get(
    central: type[ScriptedCentral], tmp_path: Path, reply_timeout: float | None = None
) -> tuple[Exception, str, str | None]:
    """How a get against C{central} failed, at which address, and the type of
    the first message the central left unanswered (if any); the get must
    have written nothing."""
    port = await listen(central)
    address = f"127.0.0.1:{port.getHost().port}"
    try:
        job = GetJob(
            reactor,
            ClusterAccess(
                central_endpoint(reactor, address), reply_timeout=reply_timeout
            ),
            "tester",
            "clip.mp4",
            str(tmp_path),
            retryFor=0,
        )
        with pytest.raises(Exception) as raised:
            await job.run()
        assert os.listdir(tmp_path) == []
        unanswered = port.factory.unanswered
        return raised.value, address, unanswered.result if unanswered.called else None
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_central_that_never_answers_fails_the_get_in_one_line(
    tmp_path: Path,
) -> None:
    """It once left list and get waiting until killed, printing nothing."""
    error, address, unanswered = await failed_get(Mute, tmp_path, reply_timeout=0.5)
    assert isinstance(error, CentralSilentError)
    assert (
        str(error) == f"the central at {address} did not answer 'locate' within 0.5 s"
    )
    assert exit_status(error) == EXIT_CENTRAL_UNREACHABLE
    assert unanswered == "locate"


def test_each_request_has_its_deadline_and_a_queue_place_ends_the_admits() -> None:
    """On a fake clock: the hello's deadline, then an admit answered by a
    place in the queue waits past any deadline for its slot."""
    clock = Clock()
    central = CentralConnection("tester", replyTimeout=5, clock=clock)
    transport = StringTransport()
    central.makeConnection(transport)
    clock.advance(4.9)
    central.dataReceived(encode({"type": "welcome", "id": 1, "version": 1}))
    clock.advance(1)
    assert not transport.disconnecting
    admitted: list[float] = []
    Deferred.fromCoroutine(central.admit("clip.mp4")).addCallback(admitted.append)
    admit_request = Admit(2, "clip.mp4")
    central.dataReceived(
        encode({"type": "queued", "id": 2, "position": 3, "name": "clip.mp4"})
    )
    clock.advance(3600)
    assert not transport.disconnecting and admitted == []
    slot = {**file_reply(admit_request, "clip.mp4"), "type": "admitted", "id": 2}
    central.dataReceived(encode(slot))
    assert admitted == [0]
    asked: list[object] = []
    Deferred.fromCoroutine(central.locate("clip.mp4")).addBoth(asked.append)
    clock.advance(5)
    assert transport.disconnecting
    central.connectionLost(Failure(ConnectionDone()))
    asked[0].trap(CentralSilentError)  # type: ignore[attr-defined]
    assert not clock.getDelayedCalls()


class Garbling(ScriptedCentral):
    """Welcomes, then answers with a frame that is not JSON."""

    def answer(self, message: Any) -> dict[str, Any] | None:
        if message.TYPE == "locate":
            body = b'{"type": "located", "id": %d, "x": NaN}' % message.id
            self.transport.write(len(body).to_bytes(4, "big") + body)
        return None


@pytest_twisted.ensureDeferred
async def test_a_malformed_frame_from_the_central_is_said_as_such(
    tmp_path: Path,
) -> None:
    """It was reported as a lost connection, exit 3 (central unreachable)."""
    error, _, _ = await failed_get(Garbling, tmp_path)
    assert isinstance(error, BadCentralReplyError)
    assert str(error) == (
        "the central sent a malformed message (bad_frame: frame is not JSON: "
        "NaN is not JSON); hung up on it"
    )
    assert exit_status(error) == 1


def test_only_an_admit_may_be_answered_by_a_queue_place() -> None:
    """A 'queued' answering the hello cancelled its deadline: the hang came back."""
    clock = Clock()
    central = CentralConnection("tester", replyTimeout=5, clock=clock)
    transport = StringTransport()
    central.makeConnection(transport)
    central.dataReceived(
        encode({"type": "queued", "id": 1, "position": 1, "name": "clip.mp4"})
    )
    clock.advance(5)
    assert transport.disconnecting
    central.connectionLost(Failure(ConnectionDone()))
    central.welcomed.addErrback(lambda reason: reason.trap(CentralSilentError))
    # Asked again once hung up, it fails at once rather than waiting for ever.
    asked: list[object] = []
    Deferred.fromCoroutine(central.locate("clip.mp4")).addBoth(asked.append)
    asked[0].trap(CentralSilentError)  # type: ignore[attr-defined]
    assert not clock.getDelayedCalls()


class Twins(ScriptedCentral):
    """Locates every file on two sources with one name, the first dead."""

    def answer(self, message: Any) -> dict[str, Any] | None:
        if message.TYPE not in ("locate", "admit"):
            return None
        reply = file_reply(message, message.name)
        reply["sources"] = [
            {"name": "s1", "host": "127.0.0.1", "port": 1},
            {"name": "s1", "host": "127.0.0.1", "port": 7001},
        ]
        return reply


@pytest_twisted.ensureDeferred
async def test_two_sources_with_one_name_are_refused_as_malformed(
    tmp_path: Path,
) -> None:
    """Sources are known by name: the live twin of a dead source was never tried."""
    error, _, _ = await failed_get(Twins, tmp_path)
    assert isinstance(error, BadCentralReplyError)
    assert str(error) == (
        "the central's answer to 'locate' is malformed: two sources named 's1'"
    )
    assert exit_status(error) == 1


def sent_frames(transport: StringTransport) -> list[Any]:
    """The messages written to C{transport} so far, parsed; then forgotten."""
    decoder = FrameDecoder(CENTRAL_INBOUND, 1 << 16)
    events = decoder.feed(transport.value())
    transport.clear()
    return [event.message for event in events if isinstance(event, MessageReceived)]


def queued_admit(
    clock: Clock,
) -> tuple[CentralConnection, StringTransport, list[Any]]:
    """A connection whose admit the central answered with a place in its
    queue (what was sent until then cleared), and where the admit's outcome
    will go."""
    central = CentralConnection("tester", replyTimeout=5, clock=clock)
    transport = StringTransport()
    central.makeConnection(transport)
    central.dataReceived(encode({"type": "welcome", "id": 1, "version": 1}))
    outcome: list[Any] = []
    Deferred.fromCoroutine(central.admit("clip.mp4")).addBoth(outcome.append)
    central.dataReceived(
        encode({"type": "queued", "id": 2, "position": 3, "name": "clip.mp4"})
    )
    transport.clear()
    return central, transport, outcome


def test_a_queued_client_pings_and_a_silent_central_fails_the_admit() -> None:
    """A queued admit waited for ever on a central that stopped answering."""
    clock = Clock()
    central, transport, outcome = queued_admit(clock)
    # Answered pings keep the place in the queue.
    for _ in range(3):
        clock.advance(5)
        [ping] = sent_frames(transport)
        assert ping.TYPE == "ping"
        central.dataReceived(encode({"type": "pong", "id": ping.id}))
    assert not transport.disconnecting and outcome == []
    # An unanswered one hangs up within the reply timeout.
    clock.advance(5)
    [ping] = sent_frames(transport)
    clock.advance(5)
    assert transport.disconnecting
    central.connectionLost(Failure(ConnectionDone()))
    error = outcome[0].value
    assert isinstance(error, CentralSilentError)
    assert str(error).endswith("did not answer 'ping' within 5 s")
    assert not clock.getDelayedCalls()


def test_pings_end_with_the_queue() -> None:
    clock = Clock()
    central, transport, outcome = queued_admit(clock)
    clock.advance(5)
    [ping] = sent_frames(transport)
    central.dataReceived(encode({"type": "pong", "id": ping.id}))
    slot = {**file_reply(Admit(2, "clip.mp4"), "clip.mp4"), "type": "admitted"}
    central.dataReceived(encode(slot))
    assert outcome == [0]
    assert not clock.getDelayedCalls()
    clock.advance(60)
    assert sent_frames(transport) == []


@pytest_twisted.ensureDeferred
async def test_a_central_over_its_caps_is_said_to_be_busy(tmp_path: Path) -> None:
    """It was said as a lost connection."""
    error, address, _ = await failed_get(Full, tmp_path)  # type: ignore[arg-type]
    assert isinstance(error, CentralBusyError)
    assert str(error) == (
        f"the central at {address} is busy: 127.0.0.1 already holds 64 "
        "connections to this server"
    )
    assert exit_status(error) == EXIT_CENTRAL_UNREACHABLE
