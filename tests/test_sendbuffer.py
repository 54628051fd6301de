"""--send-buffer: asked only where the kernel grants more than it grows to."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from twisted.python.filepath import FilePath

from redesdl.secondary.sendbuffer import (
    DEFAULT_SEND_BUFFER,
    SendLimits,
    kernel_send_limits,
    send_buffer_request,
    unasked_reason,
)
from redesdl.secondary.tap import Options

MiB = 1024 * 1024
#: Linux's defaults on a machine whose operator raised wmem_max to 4 MiB.
RAISED = SendLimits(asked_max=4 * MiB, grown_max=4 * MiB)
#: Linux's defaults as shipped: SO_SNDBUF may ask for 208 KiB at most.
SHIPPED = SendLimits(asked_max=212992, grown_max=4 * MiB)


def test_the_kernel_doubles_what_is_asked_so_half_is_asked() -> None:
    assert send_buffer_request(8 * MiB, RAISED) == 4 * MiB


def test_a_buffer_over_the_cap_is_asked_at_the_cap() -> None:
    assert send_buffer_request(64 * MiB, RAISED) == 4 * MiB


@pytest.mark.parametrize(
    ("wanted", "limits"),
    [
        (None, RAISED),
        (8 * MiB, None),
        (8 * MiB, SHIPPED),
        (4 * MiB, RAISED),
        (2 * MiB, RAISED),
    ],
)
def test_nothing_is_asked_that_would_not_beat_the_kernels_own_growth(
    wanted: int | None, limits: SendLimits | None
) -> None:
    assert send_buffer_request(wanted, limits) is None


def test_the_operator_is_told_why_a_buffer_was_not_asked() -> None:
    assert unasked_reason(8 * MiB, RAISED) is None
    assert unasked_reason(None, SHIPPED) is None
    assert unasked_reason(8 * MiB, SHIPPED) == (
        "net.core.wmem_max is 212992, so the kernel would grant 425984 bytes, "
        "no more than the 4194304 it grows a buffer to by itself"
    )
    assert unasked_reason(8 * MiB, None) == "the kernel's limits cannot be read"


def proc_net(root: Path, wmem_max: str, tcp_wmem: str) -> FilePath[str]:
    (root / "core").mkdir()
    (root / "ipv4").mkdir()
    (root / "core" / "wmem_max").write_text(wmem_max)
    (root / "ipv4" / "tcp_wmem").write_text(tcp_wmem)
    return FilePath(str(root))


def test_the_limits_are_read_from_proc(tmp_path: Path) -> None:
    limits = kernel_send_limits(
        proc_net(tmp_path, "4194304\n", "4096\t16384\t6291456\n")
    )
    assert limits == SendLimits(asked_max=4 * MiB, grown_max=6 * MiB)


@pytest.mark.parametrize(
    ("wmem_max", "tcp_wmem"), [("lots\n", "4096 16384 4194304\n"), ("4194304", "")]
)
def test_unreadable_limits_leave_the_kernel_alone(
    tmp_path: Path, wmem_max: str, tcp_wmem: str
) -> None:
    assert kernel_send_limits(proc_net(tmp_path, wmem_max, tcp_wmem)) is None


def test_no_proc_leaves_the_kernel_alone(tmp_path: Path) -> None:
    assert kernel_send_limits(FilePath(str(tmp_path / "absent"))) is None


def options(*args: str) -> Options:
    parsed = Options()
    parsed.parseOptions(["--data", ".", *args])
    return parsed


def test_the_option_takes_a_size_or_auto() -> None:
    assert options()["send-buffer"] == DEFAULT_SEND_BUFFER
    assert options("--send-buffer", "16M")["send-buffer"] == 16 * MiB
    assert options("--send-buffer", "auto")["send-buffer"] is None
    for wrong in ("0", "lots", "-4M"):
        with pytest.raises(SystemExit, match=r"--send-buffer: .* nor auto"):
            options("--send-buffer", wrong)


def test_a_socket_takes_what_is_asked() -> None:
    """The request is what C{SO_SNDBUF} takes: Linux reports it doubled."""
    request = send_buffer_request(DEFAULT_SEND_BUFFER, kernel_send_limits())
    if request is None:
        pytest.skip("this kernel's wmem_max leaves send buffers to autotuning")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, request)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * request
