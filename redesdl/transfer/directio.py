"""A download's chunks going to disk around the page cache.

Why: the client verifies every chunk in memory, so the copy of the file the
kernel would keep in its page cache is never read back by the download. Going
through it costs a copy into freshly allocated cache pages, their writeback
later, and the eviction of whatever the user had cached. On a VM that returns
free memory to its host (free page reporting), those fresh pages are also
faulted in again by the host: on this project's VM that doubled the client's
system time in some runs. ``O_DIRECT`` sends the bytes from our buffer to the
disk instead, at the price of waiting for the disk on each write; so a
download goes around the cache only once a
L{redesdl.transfer.writeroute.WriteRouter} found the cache too dear, unless
``get --direct-io`` or ``--no-direct-io`` fixed the way.

``O_DIRECT`` wants the buffer, the file offset and the length aligned to the
device's block. Chunks start at multiples of the chunk size, so a chunk's
bytes from a block boundary on are gathered in a page-aligned stage (anonymous
``mmap``, reused from a pool) and written a whole stage at a time; the last
bytes of a file that do not fill a block go through the ordinary descriptor.
Where the file system refuses ``O_DIRECT`` (at open, or ``EINVAL`` on a write)
the rest of the download is written the ordinary way.
Replication keeps the page cache: a secondary serves what it copied.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading

from twisted.logger import Logger

from redesdl.fsutil import write_fully
from redesdl.transfer.writeroute import Route, WriteRouter

#: What offsets and lengths of direct writes are multiples of (a page: enough
#: for every common disk; a device that wants more answers EINVAL).
ALIGNMENT = 4096

#: Bytes gathered before one direct write. Each write waits for the disk, so
#: fewer, larger ones keep up (1 GiB from 3 sources: 1.05 s with 1 MiB, 1.17 s
#: with 512 KiB, 1.29 s with 256 KiB); one stage per chunk being received.
STAGE_SIZE = 1024 * 1024

#: Bytes a connection may queue for its writer thread when the download may
#: write around the page cache (1 MiB with ``--no-direct-io``): each chunk
#: being received then holds a stage, and this keeps the peak RSS of 1 GiB
#: from 3 sources at 62 MiB, not 65-67.
DIRECT_QUEUED_BYTES = 512 * 1024

#: The errors by which a file system says it does not do O_DIRECT.
_REFUSALS = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP)

log = Logger()


class DirectFile:
    """The ``.part`` opened a second time with ``O_DIRECT``, and the stages
    its chunk writers share.

    Writer threads take and give stages; a lock guards the pool. L{usable}
    turns false for good at the first write the file system refuses.
    """

    def __init__(self, fd: int, path: str, stage_size: int = STAGE_SIZE) -> None:
        self.fd = fd
        self.path = path
        self.stage_size = stage_size
        self.usable = True
        self._lock = threading.Lock()
        #: Every stage's memory, by the id of the view handed out on it.
        self._areas: dict[int, mmap.mmap] = {}
        self._free: list[memoryview] = []

    @classmethod
    def open(
        cls, path: str, buffered_fd: int, stage_size: int = STAGE_SIZE
    ) -> DirectFile | None:
        """C{path} opened ``O_DIRECT``, if it is still the file behind
        C{buffered_fd} and the file system accepts it; else None."""
        flag = getattr(os, "O_DIRECT", 0)
        if not flag:
            return None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | flag)
        except OSError as e:
            log.info(
                "{path}: no direct writes ({error}); writing through the page cache",
                path=path,
                error=e.strerror,
            )
            return None
        ours, opened = os.fstat(buffered_fd), os.fstat(fd)
        if (ours.st_dev, ours.st_ino) != (opened.st_dev, opened.st_ino):
            # Replaced since it was opened: the check before the rename fails.
            os.close(fd)
            return None
        return cls(fd, path, stage_size)

    @property
    def stages(self) -> int:
        """Stages allocated so far: as many as chunks were written at once."""
        return len(self._areas)

    def take(self) -> memoryview:
        with self._lock:
            if self._free:
                return self._free.pop()
            area = mmap.mmap(
                -1, self.stage_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
            )
            stage = memoryview(area)
            self._areas[id(stage)] = area
            return stage

    def give(self, stage: memoryview) -> None:
        with self._lock:
            self._free.append(stage)

    def refused(self, error: OSError) -> None:
        """A direct write failed with C{error}: write normally from now on."""
        if self.usable:
            self.usable = False
            log.warn(
                "{path}: direct writes refused ({error}); writing through the "
                "page cache",
                path=self.path,
                error=error.strerror,
            )

    def close(self) -> None:
        """Close the descriptor and free every stage (none may be in use)."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with self._lock:
            for stage in self._free:
                area = self._areas[id(stage)]
                # A slice still alive somewhere keeps its stage until collected.
                with contextlib.suppress(BufferError):
                    stage.release()
                    area.close()
            self._areas.clear()
            self._free.clear()


class StagedWrite:
    """One chunk's bytes on their way to a L{DirectFile}, in arrival order.

    Not thread-safe: its L{redesdl.transfer.store.ChunkWriter} calls it under
    its own lock.
    """

    def __init__(
        self,
        target: DirectFile,
        buffered_fd: int,
        offset: int,
        router: WriteRouter | None = None,
    ) -> None:
        self._target = target
        self._buffered_fd = buffered_fd
        #: Told what each direct write cost, for the download's log.
        self._router = router
        #: Where the stage's first byte goes.
        self._at = offset
        self._stage: memoryview | None = None
        self._staged = 0

    def add(self, data: memoryview | bytes) -> None:
        """Copy C{data} into the stage, writing each stage once it is full."""
        view = memoryview(data)
        while view:
            if self._stage is None:
                self._stage = self._target.take()
            taken = min(len(view), len(self._stage) - self._staged)
            self._stage[self._staged : self._staged + taken] = view[:taken]
            self._staged += taken
            view = view[taken:]
            if self._staged == len(self._stage):
                self._write(self._staged)

    def finish(self) -> None:
        """Write what is staged (whole blocks directly, the bytes after the
        last whole block normally) and give the stage back."""
        if self._stage is None:
            return
        whole = self._staged - self._staged % ALIGNMENT
        write_fully(
            self._buffered_fd, self._stage[whole : self._staged], self._at + whole
        )
        self._write(whole)
        self.discard()

    def discard(self) -> None:
        """Drop what is staged and give the stage back (the chunk was
        abandoned, or is written)."""
        if self._stage is not None:
            self._target.give(self._stage)
            self._stage = None
            self._staged = 0

    def _write(self, length: int) -> None:
        """Write the stage's first C{length} bytes; the stage is then empty."""
        assert self._stage is not None
        started = Route.DIRECT.clock()
        piece = self._stage[:length]
        done = 0
        while done < length and self._target.usable and self._at % ALIGNMENT == 0:
            try:
                done += os.pwrite(self._target.fd, piece[done:], self._at + done)
            except OSError as e:
                if e.errno not in _REFUSALS:
                    raise
                self._target.refused(e)
            if done % ALIGNMENT:
                break  # a short write off the block: the rest goes normally
        write_fully(self._buffered_fd, piece[done:], self._at + done)
        if self._router is not None:
            self._router.record(Route.DIRECT, done, Route.DIRECT.clock() - started)
        self._at += length
        self._staged = 0
