"""A listening port that fails the daemon at once when it cannot be opened.

A bare ``StreamServerEndpointService`` only logs a failed bind and leaves the
daemon running with no socket. Under twistd, L{ListeningService} listens in
``privilegedStartService`` and turns a failure into ``SystemExit`` with one
clear line, so the process exits non-zero before the reactor starts.

It also listens with an accept queue of L{DEFAULT_BACKLOG} unless the
description names its own ``backlog=``: Twisted's default of 50 overflows when
a thousand secondaries reconnect at once after a central restart.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from redesdl.tls import TLSConfig


DEFAULT_BACKLOG = 1024
"""Connections the kernel holds for us before we accept them (capped by the
kernel's own limit, net.core.somaxconn on Linux)."""

_TAKES_BACKLOG = frozenset({"tcp", "tcp6", "ssl", "unix"})


def with_backlog(description: str, backlog: int = DEFAULT_BACKLOG) -> str:
    """C{description} with C{backlog} added if its endpoint takes one and it
    names none; any other description (``systemd:``...) is returned as is."""
    fields = re.split(r"(?<!\\):", description)
    if fields[0] not in _TAKES_BACKLOG:
        return description
    if any(field.startswith("backlog=") for field in fields[1:]):
        return description
    return f"{description}:backlog={backlog}"


class ListeningService(Service):
    """Listen on an endpoint description while the service runs."""

    log = Logger()

    def __init__(
        self,
        description: str,
        factory: Factory,
        role: str,
        reactor: Any = None,
        tls: TLSConfig | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.description = description
        self.factory = factory
        self._tls = tls
        self._role = role
        self._reactor = reactor
        self.port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None
        self._waiters: list[Deferred[IListeningPort]] = []
        self._outcome: IListeningPort | Failure | None = None
        self._exitOnFailure = False

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._exitOnFailure = True
        self._listen()
        self._exitOnFailure = False
        if isinstance(self._outcome, Failure):
            raise SystemExit(self._describe(self._outcome))

    def _describe(self, failure: Failure) -> str:
        reason = failure.value
        if isinstance(reason, CannotListenError) and reason.socketError is not None:
            reason = getattr(reason.socketError, "strerror", None) or reason.socketError
        return f"{self._role}: cannot listen on {self.description}: {reason}"

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self._listen()

    def _listen(self) -> None:
        endpoint = serverFromString(self._reactor, with_backlog(self.description))
        factory = self.factory
        if self._tls is not None:
            factory = self._tls.serverFactory(factory)
        self._listening = endpoint.listen(factory)
        self._listening.addBoth(self._listened)

    def _listened(self, outcome: IListeningPort | Failure) -> None:
        self._outcome = outcome
        if isinstance(outcome, Failure):
            if not self._exitOnFailure:
                self.log.critical("{line}", line=self._describe(outcome))
        else:
            self.port = outcome
            address = outcome.getHost()
            self.log.info(
                "{role} listening on {host}:{port}",
                role=self._role,
                host=getattr(address, "host", address),
                port=getattr(address, "port", ""),
            )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    def whenListening(self) -> Deferred[IListeningPort]:
        """Fire with the listening port, or fail if listening failed."""
        waiter: Deferred[IListeningPort] = Deferred()
        if self._outcome is None:
            self._waiters.append(waiter)
        elif isinstance(self._outcome, Failure):
            waiter.errback(self._outcome)
        else:
            waiter.callback(self._outcome)
        return waiter

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        disconnectAll = getattr(self.factory, "disconnectAll", None)
        if disconnectAll is not None:
            disconnectAll()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None
