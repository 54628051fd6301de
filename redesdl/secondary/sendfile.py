"""A chunk's bytes sent by the kernel, from the file to a plain TCP socket.

Reading a block into a Python bytes object and writing it to the transport
copies every byte twice through the interpreter; ``os.sendfile`` moves them
from the page cache to the socket without Python seeing them. The catch is
Twisted's own write buffer: bytes written to the socket behind Twisted's back
must never overtake bytes Twisted still holds (the chunk header, for one), so
a slice goes out only while the transport holds nothing unsent.

The socket is non-blocking. After every slice (and on ``EAGAIN``) the range
asks to be told when the socket is writable again, and sends nothing until
then: a peer that stops reading costs no CPU and no memory, and each peer
gets at most one slice per reactor turn.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.interfaces import ISSLTransport, ITCPTransport

#: Most bytes one connection hands the kernel per reactor turn, so that one
#: fast peer cannot starve the others: half the send buffer a chunk server
#: asks for (L{redesdl.secondary.sendbuffer}), which is what a wake finds free.
SLICE = 4 * 1024 * 1024


class SendfileRange:
    """Send C{length} bytes of an open file from C{offset}, a slice per call.

    A L{redesdl.machines.chunk_session.ChunkWriter}. Everything that touches
    the socket or the transport is injected, so the logic runs on fakes:

    - C{sendfile(file_fd, offset, count)} sends and returns the byte count,
      raising C{BlockingIOError} when the socket is full;
    - C{pending_bytes()} is what the transport still holds unsent;
    - C{wait_writable()} asks for one more call of L{write_block} once the
      socket can take bytes (through the session's drain);
    - C{on_sent(count)} hears of every byte that left;
    - C{on_peer_gone(error)} hears that the socket failed (reset, broken pipe).
    """

    #: Bytes read and held for the rate limit: the kernel holds them instead.
    held = 0

    def __init__(
        self,
        fd: int,
        offset: int,
        length: int,
        *,
        sendfile: Callable[[int, int, int], int],
        pending_bytes: Callable[[], int],
        wait_writable: Callable[[], None],
        on_sent: Callable[[int], None],
        on_peer_gone: Callable[[OSError], None],
    ) -> None:
        self._fd: int | None = fd
        self._offset = offset
        self._remaining = length
        self._sendfile = sendfile
        self._pending_bytes = pending_bytes
        self._wait_writable = wait_writable
        self._on_sent = on_sent
        self._on_peer_gone = on_peer_gone

    @property
    def done(self) -> bool:
        return not self._remaining

    def write_block(self) -> bool:
        """Send one slice if the socket is ours alone; False if the file ran short."""
        if self._fd is None or not self._remaining:
            return True
        if self._pending_bytes():
            # The transport is writing the header; its drain calls again.
            return True
        try:
            sent = self._sendfile(self._fd, self._offset, min(SLICE, self._remaining))
        except BlockingIOError:
            self._wait_writable()
            return True
        except (ConnectionError, TimeoutError) as e:
            self._on_peer_gone(e)
            return True
        except OSError:
            return False
        if sent == 0:
            # The file ends before the range does: it shrank.
            return False
        self._offset += sent
        self._remaining -= sent
        self._on_sent(sent)
        self._wait_writable()
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def can_sendfile(transport: Any) -> bool:
    """True if C{transport} is a plain TCP socket the kernel may write to."""
    return (
        hasattr(os, "sendfile")
        and ITCPTransport.providedBy(transport)
        and not ISSLTransport.providedBy(transport)
        and callable(getattr(transport, "startWriting", None))
    )


def socket_sendfile(transport: Any) -> Callable[[int, int, int], int]:
    """C{os.sendfile} bound to C{transport}'s socket."""
    return partial(os.sendfile, transport.getHandle().fileno())
