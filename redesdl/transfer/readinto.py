"""A chunk's bytes received from a plain TCP socket straight into a buffer.

Twisted's TCP transport reads with ``socket.recv(bufferSize)``: every read
allocates a new bytes object, and a 1 MiB one is fresh memory the kernel
must fault in page by page (about 0.1 CPU-s per GiB downloaded). Twisted has
no receive-into interface, so while a chunk's payload is due this reader
takes the transport's place for reads and calls ``recv_into`` on the gather
buffer the writer thread will hash and write from
(L{redesdl.transfer.writer.SinkWorker.receive}), reused chunk after chunk.
Everything else (frames between chunks, the end of the connection) still
goes through Twisted's own read.

It installs only on the transport it was written against: one whose
C{doRead} is Twisted's C{tcp.Connection.doRead} and that has a C{socket}.
TLS, or a Twisted whose TCP read changed, keeps the plain path (and
C{tests/test_readinto.py} says so loudly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import main, tcp

#: What Twisted's read returns: None, or why the connection ended.
ReadResult = BaseException | None


class PayloadSink(Protocol):
    """The protocol side: where payload goes, and what it is told after."""

    def payload_due(self) -> int:
        """Bytes of the current chunk's payload still to come (0: none)."""

    def receive_payload(
        self, read_into: Callable[[memoryview], int], limit: int
    ) -> int:
        """Receive at most C{limit} payload bytes with C{read_into}; how many."""

    def payload_received(self, count: int) -> None:
        """C{count} payload bytes were received by L{receive_payload}."""


def can_read_into(transport: Any) -> bool:
    """True if C{transport} is a Twisted TCP connection this reader knows."""
    own_read = getattr(type(transport), "doRead", None)
    return own_read is tcp.Connection.doRead and callable(
        getattr(getattr(transport, "socket", None), "recv_into", None)
    )


class PayloadReader:
    """Stands in for C{transport.doRead} while installed on it."""

    def __init__(self, transport: Any, sink: PayloadSink) -> None:
        self._transport = transport
        self._sink = sink
        self._recv_into = transport.socket.recv_into
        #: Reads that went straight into a buffer (what a test counts).
        self.reads_into = 0

    @classmethod
    def install(cls, transport: Any, sink: PayloadSink) -> PayloadReader | None:
        """Read C{transport}'s payload for C{sink}; None if it cannot."""
        if not can_read_into(transport):
            return None
        reader = cls(transport, sink)
        transport.doRead = reader.doRead
        return reader

    def uninstall(self) -> None:
        """Give the transport its own read back (and drop the cycle)."""
        self._transport.__dict__.pop("doRead", None)

    def doRead(self) -> ReadResult:
        due = self._sink.payload_due()
        if not due:
            return tcp.Connection.doRead(self._transport)
        try:
            count = self._sink.receive_payload(self._recv_into, due)
        except BlockingIOError:
            return None
        except OSError:
            return main.CONNECTION_LOST
        if not count:
            return main.CONNECTION_DONE
        self.reads_into += 1
        self._sink.payload_received(count)
        return None
