"""A download's freed receive buffers are reused, not faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from redesdl.transfer.allocator import keep_freed_buffers

#: Receives 256 MiB the way a download does: 1 MiB recv() calls on one
#: thread, the buffers freed by another (the writer). It prints the page
#: faults per MiB after the first 32 MiB. Untuned glibc gave 38-71 here: a
#: fresh 1 MiB buffer is 256 pages.
RECEIVER = r"""
import os, queue, resource, socket, sys, threading
from redesdl.transfer.allocator import keep_freed_buffers
if sys.argv[1] == "tuned":
    assert keep_freed_buffers()
MiB = 1 << 20
sender, receiver = socket.socketpair()
block = os.urandom(MiB)
def send():
    for _ in range(256):
        sender.sendall(block)
    sender.close()
written = queue.Queue(maxsize=8)
def write():
    while written.get() is not None:
        pass
threading.Thread(target=send).start()
writer = threading.Thread(target=write)
writer.start()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
received, start, first = 0, 0, 0
while data := receiver.recv(MiB):
    received += len(data)
    written.put(data)
    del data
    if not start and received > 32 * MiB:
        start, first = received, faults()
written.put(None)
writer.join()
print((faults() - first) / ((received - start) / MiB))
"""


def faults_per_mib(mode: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", RECEIVER, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_receive_buffers_are_reused() -> None:
    assert faults_per_mib("tuned") < 16


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_both_settings() -> None:
    assert keep_freed_buffers()
