"""How a TLS chunk server learns that its transport has room, on a fake clock.

Twisted's TLS asks a pull producer for data again and again until a write
fills the TCP buffer; the chunk server registers a streaming producer
instead (L{_RoomWatcher}) and must be told about room once per pause, not
in a loop. L{unsent_in} must count what a TLS transport holds once, though
the TLS layer answers for the TCP transport's attributes too.
"""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from redesdl.secondary.chunkserver import _RoomWatcher
from redesdl.secondary.unsent import unsent_counter, unsent_in


class Session:
    """What the watcher tells: each time, one block (it fills the transport)
    or one small reply (it does not), until nothing more is owed."""

    def __init__(self, owed: int = 1000, fills: bool = True) -> None:
        self.clock = Clock()
        self.room = _RoomWatcher(self.told, self.clock)
        self.owed = owed
        self.fills = fills
        self.times = 0

    def told(self) -> None:
        self.times += 1
        self.owed -= 1
        if not self.owed:
            self.room.stop()
        elif self.fills:
            self.room.pauseProducing()  # what Twisted does on a full buffer


def test_a_wanted_watcher_tells_once_a_turn_until_nothing_is_owed() -> None:
    session = Session(owed=3, fills=False)
    session.room.start()
    assert session.times == 0, "never inside the caller's own call"
    session.clock.advance(0)
    assert session.times == 3, "small writes leave room: asked again each turn"
    assert not session.clock.getDelayedCalls()


def test_a_paused_watcher_says_nothing_until_twisted_resumes_it() -> None:
    session = Session()
    session.room.start()
    session.clock.advance(0)
    assert session.times == 1
    for _ in range(100):
        session.clock.advance(0)
    assert session.times == 1, "paused by the block it wrote: no busy loop"
    session.room.resumeProducing()
    session.clock.advance(0)
    assert session.times == 2


def test_a_watcher_nobody_wants_stays_quiet_through_pauses() -> None:
    session = Session()
    session.room.pauseProducing()
    session.room.resumeProducing()
    session.clock.advance(0)
    session.room.start()
    session.room.stop()
    session.clock.advance(0)
    assert session.times == 0 and not session.clock.getDelayedCalls()


def test_stopping_production_cancels_the_pending_question() -> None:
    session = Session()
    session.room.start()
    session.room.stopProducing()
    session.clock.advance(0)
    assert session.times == 0 and not session.clock.getDelayedCalls()


class FakeTCP:
    """What Twisted's TCP transport keeps about its unsent bytes."""

    dataBuffer = b"x" * 1000
    offset = 200
    _tempDataLen = 500


def test_what_a_tls_transport_holds_is_counted_once() -> None:
    wrapper = ProtocolWrapper(
        WrappingFactory(Factory.forProtocol(Protocol)), Protocol()
    )
    wrapper.transport = FakeTCP()  # type: ignore[assignment]
    wrapper._appSendBuffer = [b"y" * 30]  # type: ignore[attr-defined]
    assert wrapper.dataBuffer == FakeTCP.dataBuffer, "the wrapper forwards attributes"
    assert unsent_in(wrapper) == 800 + 500 + 30


def test_a_plain_transport_is_counted_as_it_changes() -> None:
    tcp = FakeTCP()
    count = unsent_counter(tcp)
    assert count() == 800 + 500
    tcp.offset, tcp._tempDataLen = 1000, 0
    assert count() == 0
