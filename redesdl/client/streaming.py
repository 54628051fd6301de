"""``get -o -``: the file's verified chunks on stdout, in order, as they verify.

The download still lands in a ``.part`` file (in a temporary folder): chunks
verify in any order, so each is read back from there once every chunk
before it has been written out. Nothing unverified ever reaches stdout.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from redesdl.transfer.download import Download

#: Bytes read from the ``.part`` and written to the output at a time.
BLOCK = 1024 * 1024


class OrderedOutput:
    """Write C{download}'s chunks to C{out} in order, as they are verified."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._next = 0
        self._ready: set[int] = set()
        self._fd: int | None = None
        #: Why writing failed (a closed pipe), if it did.
        self.error: OSError | None = None

    def verified(self, download: Download, index: int) -> None:
        """Chunk C{index} is verified: write it and any that waited for it."""
        manifest = download.manifest
        if self.error is not None or manifest is None:
            return
        self._ready.add(index)
        try:
            if self._fd is None:
                self._fd = os.open(download.partPath, os.O_RDONLY | os.O_CLOEXEC)
            while self._next in self._ready:
                self._ready.discard(self._next)
                offset, length = manifest.chunk_range(self._next)
                self._copy(offset, length)
                self._next += 1
            self._out.flush()
        except OSError as e:
            self.error = e
            download.interrupt()

    def _copy(self, offset: int, length: int) -> None:
        assert self._fd is not None
        while length:
            block = os.pread(self._fd, min(length, BLOCK), offset)
            if not block:
                raise OSError(0, "the .part file is shorter than its manifest")
            self._out.write(block)
            offset += len(block)
            length -= len(block)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
