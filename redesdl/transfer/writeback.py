"""Start writing a finished chunk to disk early, so the final fsync is short.

Linux's ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` queues a range for
writeback without waiting for it. Python does not expose it, so it is called
through ctypes where libc has it; elsewhere this is a no-op and the final
fsync simply does all the work.
"""

from __future__ import annotations

import ctypes

_SYNC_FILE_RANGE_WRITE = 2


def _load() -> object | None:
    try:
        # The running program's symbols, libc's among them: looking libc up
        # by name (ctypes.util.find_library) forks ldconfig on every start.
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to begin writing C{length} bytes at C{offset} to disk."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # type: ignore[operator]
