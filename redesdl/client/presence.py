"""The console's standing registration with the central: ``INSCRIBIR NAME``.

The original client registered its name with the central at once; here the
console opens a connection under that name and keeps it open (pinging within
the central's idle timeout) while the console runs, so the central's
``clients`` command lists it even between downloads. If the connection drops
(the central restarts), the next ping reconnects.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from redesdl.client.access import ClusterAccess
from redesdl.client.central import CentralConnection, connect_central
from redesdl.protocol import wire

#: Seconds between pings: well within the central's idle timeout (60 s).
PING_INTERVAL = 20.0


class CentralPresence:
    """One open, named connection to the central, kept alive."""

    log = Logger()

    def __init__(self, reactor: Any, access: ClusterAccess) -> None:
        self._access = access
        self.name: str | None = None
        self.connection: CentralConnection | None = None
        self._keeper = LoopingCall(self._keep)
        self._keeper.clock = reactor

    async def register(self, name: str) -> None:
        """Be connected as C{name} (instead of any earlier name)."""
        self.name = name
        await self._hang_up()
        self.connection = await connect_central(
            self._access.central, name, self._access.token, self._access.reply_timeout
        )
        if not self._keeper.running:
            self._keeper.start(PING_INTERVAL, now=False)

    def _keep(self) -> Deferred[Any] | None:
        connection = self.connection
        if connection is not None and connection.transport.connected:
            ping = connection.request(wire.Ping(connection.allocateId()))
            return ping.addErrback(lambda _: None)
        if self.name is None:
            return None
        return Deferred.fromCoroutine(self.register(self.name)).addErrback(
            lambda failure: self.log.info(
                "cannot reach the central to register: {error}",
                error=failure.getErrorMessage(),
            )
        )

    async def _hang_up(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None and connection.transport.connected:
            await connection.close()

    async def close(self) -> None:
        """Leave: stop pinging and hang up."""
        if self._keeper.running:
            self._keeper.stop()
        await self._hang_up()
