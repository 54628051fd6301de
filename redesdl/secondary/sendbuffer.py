"""``--send-buffer``: the socket send buffer a chunk server asks for on plain TCP.

Over plain TCP a chunk's bytes go by ``sendfile``, one call each time the
socket has room again, and what a secondary spends per GiB is mostly the
Python of those wake-ups. Linux grows a TCP send buffer by itself, up to the
last field of ``net.ipv4.tcp_wmem`` (4 MiB by default), and wakes a writer
once about half of it is free: about 1 MiB per wake. Asked for 8 MiB, a
socket takes twice as much per wake, and the secondaries of a download spend
about 15% less CPU (figures in docs/architecture.md).

Setting C{SO_SNDBUF} turns that growth off for the socket, and the kernel
caps what is asked at ``net.core.wmem_max`` (and doubles it for its own
bookkeeping). Where the cap is below what the kernel would have grown to,
asking would shrink the buffer, so nothing is asked: L{send_buffer_request}
decides, from limits read once at start by L{kernel_send_limits}.
"""

from __future__ import annotations

import socket
from typing import Any, NamedTuple

from twisted.python.filepath import FilePath

from redesdl.secondary.ratelimit import parse_rate

DEFAULT_SEND_BUFFER = 8 * 1024 * 1024

PROC_NET = FilePath("/proc/sys/net")


class SendLimits(NamedTuple):
    """What the kernel lets a TCP socket's send buffer reach."""

    #: ``net.core.wmem_max``: the most C{SO_SNDBUF} may ask for.
    asked_max: int
    #: The last field of ``net.ipv4.tcp_wmem``: where growth stops.
    grown_max: int


def kernel_send_limits(proc_net: FilePath[str] = PROC_NET) -> SendLimits | None:
    """The kernel's send buffer limits, or None where they cannot be read."""
    try:
        asked_max = int(proc_net.descendant(["core", "wmem_max"]).getContent())
        grown_max = int(
            proc_net.descendant(["ipv4", "tcp_wmem"]).getContent().split()[-1]
        )
    except (OSError, ValueError, IndexError):
        return None
    return SendLimits(asked_max, grown_max)


def send_buffer_request(wanted: int | None, limits: SendLimits | None) -> int | None:
    """The C{SO_SNDBUF} value giving a buffer of about C{wanted} bytes, or None.

    None leaves the kernel to grow the buffer: nothing was asked for, the
    limits are unknown, or the kernel would grant no more than it grows to.
    """
    if not wanted or limits is None:
        return None
    granted = min(wanted, 2 * limits.asked_max)
    if granted <= limits.grown_max:
        return None
    return granted // 2


def ask_send_buffer(transport: Any, request: int) -> None:
    """Ask C{transport}'s socket for a send buffer of C{request} (doubled)."""
    transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, request)


def unasked_reason(wanted: int | None, limits: SendLimits | None) -> str | None:
    """Why a C{wanted} buffer is left to the kernel, for the operator's log."""
    if not wanted or send_buffer_request(wanted, limits) is not None:
        return None
    if limits is None:
        return "the kernel's limits cannot be read"
    return (
        f"net.core.wmem_max is {limits.asked_max}, so the kernel would grant "
        f"{min(wanted, 2 * limits.asked_max)} bytes, no more than the "
        f"{limits.grown_max} it grows a buffer to by itself"
    )


def parse_send_buffer(text: str) -> int | None:
    """C{--send-buffer}'s bytes, such as ``8M``; None for ``auto``."""
    if text.strip().lower() == "auto":
        return None
    try:
        return parse_rate(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a size such as 4M or 16M, nor auto"
        ) from None
