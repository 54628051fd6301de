"""Accept bursts (issue 11, point 4): the daemons listen with a large backlog.

A thousand secondaries reconnecting at once overflowed Twisted's default
accept queue of 50; without ``backlog=`` in ``--listen`` we ask for 1024.
"""

from __future__ import annotations

import select
import socket
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from redesdl.listening import DEFAULT_BACKLOG, ListeningService, with_backlog


def listen(description: str) -> MemoryReactor:
    memory = MemoryReactor()
    service = ListeningService(
        description, Factory.forProtocol(Protocol), "test", memory
    )
    service.startService()
    return memory


def test_a_tcp_listen_without_backlog_gets_1024() -> None:
    (server,) = listen("tcp:0:interface=127.0.0.1").tcpServers
    port, _, backlog, interface = server
    assert (port, backlog, interface) == (0, DEFAULT_BACKLOG, "127.0.0.1")
    assert DEFAULT_BACKLOG == 1024


def test_an_explicit_backlog_is_kept() -> None:
    (server,) = listen("tcp:0:backlog=7:interface=127.0.0.1").tcpServers
    assert server[2] == 7


def test_a_unix_listen_without_backlog_gets_1024(tmp_path: object) -> None:
    (server,) = listen(f"unix:{tmp_path}/central.sock").unixServers
    assert server[2] == DEFAULT_BACKLOG


@pytest.mark.parametrize(
    "description",
    [
        "systemd:domain=INET:name=redesdl-central",
        "systemd:domain=INET:index=0",
        "tcp:7000:interface=127.0.0.1:backlog=10",
        "unix:/run/a\\:backlog=1.sock:backlog=3",
    ],
)
def test_descriptions_that_do_not_take_our_backlog_are_left_alone(
    description: str,
) -> None:
    assert with_backlog(description) == description


def test_an_escaped_colon_is_part_of_a_field() -> None:
    assert (
        with_backlog("unix:/run/a\\:backlog=1.sock")
        == "unix:/run/a\\:backlog=1.sock:backlog=1024"
    )


@pytest_twisted.ensureDeferred
async def test_the_real_port_listens_with_1024() -> None:
    service = ListeningService(
        "tcp:0:interface=127.0.0.1", Factory.forProtocol(Protocol), "test", reactor
    )
    service.startService()
    try:
        port = await service.whenListening()
        assert port.backlog == DEFAULT_BACKLOG  # type: ignore[attr-defined]
    finally:
        await service.stopService()


def test_the_systemd_socket_unit_holds_1024_waiting_connections() -> None:
    unit = Path(__file__).parent.parent / "contrib/systemd/redesdl-central.socket"
    settings = [line.strip() for line in unit.read_text().splitlines()]
    assert f"Backlog={DEFAULT_BACKLOG}" in settings


BURST = 600


def connect_burst(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sockets.append(s)
    return sockets


def established(sockets: list[socket.socket]) -> int:
    """How many finished their handshake: the kernel queued them for accept."""
    _, writable, _ = select.select([], sockets, [], 2.0)
    return sum(
        1 for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    )


@pytest_twisted.ensureDeferred
async def test_a_burst_waits_in_the_queue_while_the_daemon_is_busy() -> None:
    """Every connection of a burst the daemon cannot accept yet (its reactor
    busy: here, this test holds it) is kept by the kernel; with Twisted's 50
    only 51 would finish their handshake."""
    if int(Path("/proc/sys/net/core/somaxconn").read_text()) < DEFAULT_BACKLOG:
        pytest.skip("net.core.somaxconn is below 1024")
    service = ListeningService(
        "tcp:0:interface=127.0.0.1", Factory.forProtocol(Protocol), "test", reactor
    )
    service.startService()
    assert service.port is not None
    sockets = connect_burst(service.port.getHost().port, BURST)
    try:
        assert established(sockets) == BURST
    finally:
        for s in sockets:
            s.close()
        await service.stopService()
