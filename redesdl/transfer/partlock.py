"""One download per ``PATH.part``: the lock that keeps a second one out.

Two downloads to the same PATH (two shells, or ``get`` typed twice in one
console) would otherwise share the ``.part``: the one that finished first
renamed it, and the other kept writing its own, possibly unverified, bytes
into what had become PATH. The download that claims the ``.part`` holds an
exclusive ``flock`` on it from before it reads any state kept beside it
until it closes the file; another claim fails at once with
L{PartInUseError}. ``flock`` belongs to the open file, so two claims in one
process exclude each other too, and the kernel drops the lock when a
killed download's descriptor closes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat

from redesdl.transfer.errors import DiskError


class PartInUseError(DiskError):
    """Another download is writing the same ``PATH.part``."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is being written by another download; wait for it to end "
            "or choose another -o"
        )


def claim_part(path: str, create: bool = True) -> int | None:
    """Open C{path} for reading and writing, holding its lock.

    Returns the descriptor, or None if C{create} is false and there is no
    such file. Raises L{PartInUseError} if another download holds it, and
    C{OSError} if it cannot be opened as a regular file (C{ELOOP} for a
    symbolic link).
    """
    # O_NONBLOCK: a FIFO or device put there must not hang the open (it is
    # refused just after); on a regular file it changes nothing.
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    flags |= os.O_CREAT if create else 0
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        if create:
            raise
        return None
    try:
        hold_part(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def hold_part(fd: int, path: str) -> None:
    """Lock the file open at C{fd}, which must still be the one at C{path}."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise OSError(0, "not a regular file")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise PartInUseError(path) from None
    # The holder we lost to may have renamed its file into place between our
    # open and our lock: what we hold is then not PATH.part.
    ours = os.fstat(fd)
    try:
        there = os.lstat(path)
    except FileNotFoundError:
        raise PartInUseError(path) from None
    if (ours.st_dev, ours.st_ino) != (there.st_dev, there.st_ino):
        raise PartInUseError(path)


def check_part_free(path: str) -> None:
    """Fail early with L{PartInUseError} if a download holds C{path} now."""
    with contextlib.suppress(OSError):
        fd = claim_part(path, create=False)
        if fd is not None:
            os.close(fd)
