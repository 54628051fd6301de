"""glibc's allocator told to keep the 1 MiB receive buffers a download frees.

Every read on a source connection returns a new 1 MiB ``bytes``
(L{redesdl.transfer.source.RECEIVE_BUFFER}), freed once the writer thread
has hashed and written it. By default glibc either maps a block that size on
its own and unmaps it when freed, or gives the free top of its heap back to
the kernel: either way the next read faults in 256 fresh zeroed pages. perf
put those page faults at 8% of a client's CPU. With blocks under 4 MiB kept
in the heap (C{M_MMAP_THRESHOLD}) and up to 16 MiB of free heap top kept
(C{M_TRIM_THRESHOLD}), freed buffers are reused as they are.

Setting either turns glibc's own adjustment of both off, so both are set.
Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes

#: C{mallopt} parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 16 * 1024 * 1024


def keep_freed_buffers() -> bool:
    """Tune the allocator; True if glibc took both settings."""
    try:
        # The running program's symbols, libc's among them (no ldconfig fork).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    took_mmap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    took_trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return took_mmap and took_trim
