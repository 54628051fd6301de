"""Damage a replica the way bit rot does: bytes change, size and mtime do not."""

from __future__ import annotations

import os
from pathlib import Path


def rot(path: Path, every: int = 256 * 1024) -> None:
    """Flip a few bytes in every C{every}-byte stretch of C{path}, keeping its mtime.

    The index cache keys on (size, mtime, inode), so it cannot see this; only
    the chunk hashes can.
    """
    stat = path.stat()
    with open(path, "r+b") as f:
        for offset in range(0, stat.st_size, every):
            f.seek(offset + 5)
            f.write(b"\xff\x00\xff")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
