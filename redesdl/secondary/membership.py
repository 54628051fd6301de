"""This secondary's standing with one central: its link, kept up, paused when refused.

A secondary may register with several centrals (``--central A,B``): the
central holds only soft state rebuilt from the secondaries' reports, so two
of them are two independent registries of the same cluster. Each
L{CentralMembership} runs one reconnecting link (ClientService with backoff)
to its central, remembers the connection while it is up, and after a
refusal (wrong secret, another version) asks that central again only after
a long pause, without holding back the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint

from redesdl.secondary.centrallink import (
    CentralLinkFactory,
    CentralLinkProtocol,
    ReportingEndpoint,
)

if TYPE_CHECKING:
    from redesdl.secondary.service import SecondaryService

#: Seconds to wait before asking again a central that refused us.
REFUSED_RETRY_DELAY = 30.0


class CentralMembership:
    """One central this secondary registers with, and the link to it."""

    def __init__(
        self,
        secondary: SecondaryService,
        endpoint: IStreamClientEndpoint,
        description: str,
    ) -> None:
        self.description = description
        self.link: CentralLinkProtocol | None = None
        self._reactor = secondary.reactor
        self._service = ClientService(
            ReportingEndpoint(endpoint, description),
            CentralLinkFactory(secondary, self),
            clock=secondary.reactor,
            retryPolicy=backoffPolicy(initialDelay=0.5, maxDelay=5.0),
        )
        #: The pending second try after the central refused us, if any.
        self._retry: Any = None
        self._stopped = True

    @property
    def registered(self) -> CentralLinkProtocol | None:
        """The link, if it is up and the central accepted us."""
        return self.link if self.link is not None and self.link.registered else None

    def start(self) -> None:
        self._stopped = False
        self._service.startService()

    def stop(self) -> Deferred[None] | None:
        self._stopped = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._service.running:
            return self._service.stopService()
        return None

    def centralRefused(self) -> None:
        """The central would not have us: ask it again only after a long pause.

        A refusal will not go away in a second, and retrying at
        ClientService's pace would fill both logs.
        """
        if self._service.running:
            self._service.stopService()
            self._retry = self._reactor.callLater(REFUSED_RETRY_DELAY, self._again)

    def _again(self) -> None:
        self._retry = None
        if not self._stopped and not self._service.running:
            self._service.startService()

    def linkUp(self, link: CentralLinkProtocol) -> None:
        self.link = link

    def linkDown(self, link: CentralLinkProtocol) -> None:
        if self.link is link:
            self.link = None
