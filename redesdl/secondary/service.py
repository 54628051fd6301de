"""One secondary, assembled: listen, index, register, serve, replicate.

Start order matters: the chunk server listens first (the central must be told
a port that works), the first index scan completes, and only then does the
links to the centrals start, so a registration always carries a full catalog.
A secondary may register with several centrals: each index change, copy
result and activity report goes to every central that accepted it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.task import LoopingCall

from redesdl.endpoints import source_connector
from redesdl.listening import ListeningService
from redesdl.protocol.auth import ClusterSecret
from redesdl.protocol.tickets import Tickets
from redesdl.protocol.wire import Served
from redesdl.secondary.centrallink import CentralLinkProtocol
from redesdl.secondary.chunkserver import ChunkServerFactory
from redesdl.secondary.index import DataIndex, IndexChanges
from redesdl.secondary.membership import CentralMembership
from redesdl.secondary.ratelimit import TokenBucket
from redesdl.secondary.replication import Replicator
from redesdl.secondary.stats import SecondaryStats
from redesdl.shells.tracking import DEFAULT_LIMITS, ConnectionLimits

if TYPE_CHECKING:
    from redesdl.tls import TLSConfig

ROLE = "redesdl-secondary"

#: Seconds between reports of served chunks to the central while serving.
ACTIVITY_INTERVAL = 5.0
#: Seconds without a chunk served after which what was served is reported:
#: the central's figures catch up as soon as a transfer ends.
ACTIVITY_SETTLE = 1.0


class SecondaryService(MultiService):
    """A chunk server that keeps the central informed and fills its gaps."""

    def __init__(
        self,
        *,
        reactor: Any,
        listen: str,
        centrals: Sequence[tuple[IStreamClientEndpoint, str]],
        index: DataIndex,
        name: str,
        secondaryId: str,
        stats: SecondaryStats,
        boot: int = 1,
        advertise: str | None = None,
        rescanInterval: float = 5.0,
        rateLimit: int | None = None,
        heartbeatInterval: float = 5.0,
        heartbeatTimeout: float = 15.0,
        idleTimeout: float = 60.0,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        secret: ClusterSecret | None = None,
        tls: TLSConfig | None = None,
        requireTickets: bool = False,
        sendBuffer: int | None = None,
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.index = index
        self.name = name
        self.secondaryId = secondaryId
        self.boot = boot
        self.advertise = advertise
        self._rescanInterval = rescanInterval
        self.heartbeatInterval = heartbeatInterval
        self.heartbeatTimeout = heartbeatTimeout
        self.stats = stats
        self.secret = secret
        stats.file.setServiceParent(self)
        self.replicator = Replicator(
            index, name, reactor, self._reportReplicated, source_connector(tls)
        )
        limiter = TokenBucket(rateLimit, reactor) if rateLimit else None
        tickets = Tickets(secret) if requireTickets and secret is not None else None
        self.chunkServer = ChunkServerFactory(
            index,
            name,
            stats,
            limiter,
            reactor,
            idleTimeout,
            limits,
            tickets,
            sendBuffer,
        )
        self.listener = ListeningService(listen, self.chunkServer, ROLE, reactor, tls)
        self.listener.setServiceParent(self)
        #: One per central this secondary registers with (``--central A,B``).
        self.memberships = [
            CentralMembership(self, endpoint, description)
            for endpoint, description in centrals
        ]
        self._rescan = LoopingCall(self._scan)
        self._rescan.clock = reactor
        self._activity = LoopingCall(self._reportActivity)
        self._activity.clock = reactor
        self._settled: IDelayedCall | None = None
        stats.served_listeners.append(self._servedNow)
        index.listeners.append(self._indexChanged)

    def listeningPort(self) -> int:
        assert self.listener.port is not None
        return self.listener.port.getHost().port

    def startService(self) -> None:
        super().startService()
        self.listener.whenListening().addCallback(lambda _: self._scan()).addCallback(
            self._connect
        ).addErrback(lambda f: None)

    def _connect(self, _: Any) -> None:
        if not self.running:
            return
        for membership in self.memberships:
            membership.start()
        self._rescan.start(self._rescanInterval, now=False)
        self._activity.start(ACTIVITY_INTERVAL, now=False)

    def _scan(self) -> Any:
        def failed(reason: Any) -> None:
            self.index.log.failure("index scan failed", reason)

        return self.index.scan().addErrback(failed)

    def stopService(self) -> Any:
        for loop in (self._rescan, self._activity):
            if loop.running:
                loop.stop()
        if self._settled is not None and self._settled.active():
            self._settled.cancel()
        self._reportActivity()
        stopping = [super().stopService()]
        stopping += [membership.stop() for membership in self.memberships]
        return gatherResults([d for d in stopping if d is not None])

    @property
    def links(self) -> list[CentralLinkProtocol]:
        """The links of every central that has accepted this secondary."""
        return [m.registered for m in self.memberships if m.registered is not None]

    @property
    def link(self) -> CentralLinkProtocol | None:
        """The first central's link, registered or not (for the console)."""
        return self.memberships[0].link if self.memberships else None

    def _indexChanged(self, changes: IndexChanges) -> None:
        for link in self.links:
            link.sendChanges(changes)

    def _reportReplicated(self, name: str, ok: bool, reason: str) -> None:
        entry = self.index.entries.get(name)
        self.stats.copyEnded(
            name, ok, entry.manifest.size if ok and entry else 0, reason
        )
        for link in self.links:
            link.sendReplicated(name, ok, reason)

    def checkCopy(self, name: str) -> None:
        """Hash C{name} again and tell the central whether it is intact."""

        def checked(ok: bool) -> None:
            if not ok:
                self.stats.error("corrupt_copy")
            for link in self.links:
                link.sendVerified(name, ok)

        Deferred.fromCoroutine(self.index.recheck(name)).addCallback(checked)

    def _servedNow(self) -> None:
        """A chunk went out: report it once serving has been quiet a moment."""
        if self._settled is not None and self._settled.active():
            self._settled.reset(ACTIVITY_SETTLE)
        else:
            self._settled = self.reactor.callLater(
                ACTIVITY_SETTLE, self._reportActivity
            )

    def withdrawCopy(self, name: str, sha256: str) -> None:
        """The central removed C{name} from the cluster: move our copy aside."""
        aside = self.index.withdraw(name, sha256)
        if aside is not None:
            self.index.log.info(
                "{name} was removed from the cluster; moved to {aside}",
                name=name,
                aside=aside,
            )

    def _reportActivity(self) -> None:
        """Tell the central what was served since the last report."""
        links = self.links
        if not links:
            return
        activity = self.stats.takeActivity()
        if activity:
            served = [Served(**record) for record in activity]
            for link in links:
                link.sendActivity(served)
