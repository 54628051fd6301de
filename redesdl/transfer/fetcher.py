"""What the download loop needs of a source, and how a real one is reached.

The loop sees a source only as a L{Fetcher}: a manifest, chunks fetched into
the store's targets, and a way to hang up. L{connect_source} gives one over
TCP (or TLS); tests give in-memory fakes on a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint

from redesdl.endpoints import connect_protocol
from redesdl.manifest import FileInfo, Manifest
from redesdl.protocol.sources import SourceAddress
from redesdl.protocol.wire import Ticket
from redesdl.transfer.source import Accept, SourceConnection
from redesdl.transfer.store import ChunkWriter, MemoryCopy
from redesdl.transfer.writer import HIGH_WATER


class Fetcher(Protocol):
    """One source as the download loop uses it."""

    source_name: str
    #: True once the source is gone.
    lost: bool
    #: True if we hung up because it stopped making progress.
    timed_out: bool
    #: Fires when the source greeted us; fails if it refused us.
    welcomed: Deferred[Any]
    #: Fires once no byte received from the source can still reach the store.
    writes_done: Deferred[None]

    def fetch_manifest(self, info: FileInfo) -> Deferred[Manifest]: ...

    def fetch_chunk(
        self, manifest: Manifest, target: ChunkWriter | MemoryCopy, accept: Accept
    ) -> Deferred[bool]: ...

    def abort(self) -> None:
        """Hang up now."""

    def close(self) -> None:
        """Hang up once what we sent is flushed."""


#: Opens a fetcher for a source: (source) -> Deferred[Fetcher].
OpenSource = Callable[[SourceAddress], Deferred[Fetcher]]


def tcp_sources(
    reactor: Any,
    *,
    client_name: str,
    connect_timeout: float,
    progress_timeout: float,
    connect_source: Callable[..., IStreamClientEndpoint],
    ticket: Callable[[], Ticket | None],
    queued_bytes: int = HIGH_WATER,
) -> OpenSource:
    """Open each source as a L{SourceConnection} through C{connect_source};
    each stops reading while more than C{queued_bytes} wait for its thread."""

    def open_source(source: SourceAddress) -> Deferred[Fetcher]:
        endpoint = connect_source(reactor, source.host, source.port, connect_timeout)
        protocol = SourceConnection(
            client_name, reactor, progress_timeout, source.name, ticket, queued_bytes
        )
        return connect_protocol(endpoint, protocol)

    return open_source
