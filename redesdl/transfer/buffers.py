"""Reusable gather buffers, so a busy connection allocates a few and no more.

Small pieces of a chunk (TLS hands up 16-32 KiB at a time, a socket what it
had) are copied into one of these until it is full or the chunk ends, and
the whole buffer goes to the writer thread at once: one hand-off per buffer
rather than per piece. Once the thread wrote it, the buffer comes back here
for the next pieces instead of being freed and allocated again.
"""

from __future__ import annotations

from collections import deque

#: Bytes gathered before a hand-off to the writer thread.
GATHER_SIZE = 256 * 1024


class BufferPool:
    """At most C{keep} free bytearrays of C{size} bytes, handed out again.

    L{take} runs on the reactor thread and L{give} on a writer thread; a
    C{deque}'s append and pop are atomic, so no lock is needed.
    """

    def __init__(self, size: int = GATHER_SIZE, keep: int = 2) -> None:
        self.size = size
        self._keep = keep
        self._free: deque[bytearray] = deque()
        #: Buffers allocated so far (what a test counts).
        self.allocated = 0

    def take(self) -> bytearray:
        """A free buffer, or a new one if none is free."""
        try:
            return self._free.pop()
        except IndexError:
            self.allocated += 1
            return bytearray(self.size)

    def give(self, buffer: bytearray) -> None:
        """Take C{buffer} back once nothing reads it any more."""
        if len(self._free) < self._keep:
            self._free.append(buffer)
