"""File-system steps that must not lose or clobber data.

A finished download is moved into place with L{rename_no_replace}, which never
overwrites a file that appeared meanwhile (``os.rename`` silently would).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO


def write_fully(fd: int, data: memoryview | bytes, at: int) -> None:
    """C{os.pwrite} until all of C{data} is written at offset C{at}."""
    piece = memoryview(data)
    while piece:
        written = os.pwrite(fd, piece, at)
        at += written
        piece = piece[written:]


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_file(path: str, data: bytes) -> None:
    """Write C{data} to C{path}, readable by us alone, and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as private:
        private.write(data)
        private.flush()
        os.fsync(private.fileno())


def rename_no_replace(source: str, destination: str) -> None:
    """Move C{source} to C{destination}; raise FileExistsError if it exists."""
    try:
        os.link(source, destination)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(destination):
            raise FileExistsError(errno.EEXIST, "file exists", destination) from None
        os.rename(source, destination)
    else:
        os.unlink(source)
    fsync_directory(os.path.dirname(os.path.abspath(destination)))


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """C{path} opened for reading if it is a regular file, not a link to one.

    Anything else fails with C{OSError} at once: a FIFO would block the
    reader for ever, a symlink to ``/dev/zero`` never ends (a data file
    swapped between a scan and its hashing, a state file planted).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb", buffering=0)
