"""Turn the ``--central`` value into client endpoints.

Users type ``HOST:PORT``; operators may give any Twisted client endpoint
string instead (``tls:...``, ``unix:path=...``), recognised by its ``=``.
With a L{TLSConfig}, ``HOST:PORT`` is reached over mutual TLS. Several
centrals are separated by commas: a secondary registers with each, a client
uses the first that answers (L{FirstReachable}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, clientFromString
from twisted.internet.interfaces import IProtocol, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from zope.interface import implementer

from redesdl.protocol.sources import (
    central_addresses,
    is_endpoint_string,
    parse_host_port,
)

if TYPE_CHECKING:
    from redesdl.tls import TLSConfig


@implementer(IStreamClientEndpoint)
class FirstReachable:
    """Connect to the first of several endpoints that accepts, trying them in order.

    The error of the last one is what a caller sees when none answers.
    """

    def __init__(self, endpoints: list[IStreamClientEndpoint]) -> None:
        self._endpoints = endpoints

    def connect(self, factory: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._first(factory))

    async def _first(self, factory: Any) -> Any:
        for endpoint in self._endpoints[:-1]:
            try:
                return await endpoint.connect(factory)
            except Exception:
                continue
        return await self._endpoints[-1].connect(factory)


def plain_endpoint(
    reactor: Any, host: str, port: int, timeout: float = 10.0
) -> IStreamClientEndpoint:
    """A plain TCP connection to C{host}:C{port}."""
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


def source_connector(tls: TLSConfig | None) -> Any:
    """How to reach a secondary the central named: over TLS if configured."""
    return tls.clientEndpoint if tls is not None else plain_endpoint


def central_endpoint(
    reactor: Any, value: str, timeout: float = 10.0, tls: TLSConfig | None = None
) -> IStreamClientEndpoint:
    """The endpoint for C{value}; ValueError if it is neither form.

    Several centrals (C{A,B}) give a L{FirstReachable} over them.

    With C{tls}, a C{HOST:PORT} is reached over mutual TLS; an endpoint
    string is taken as it is.
    """
    addresses = central_addresses(value)
    if len(addresses) > 1:
        return FirstReachable(
            [central_endpoint(reactor, one, timeout, tls) for one in addresses]
        )
    value = addresses[0]
    if is_endpoint_string(value):
        try:
            return clientFromString(reactor, value)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{value!r} is not a client endpoint ({e})") from None
    try:
        host, port = parse_host_port(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither HOST:PORT nor an endpoint string (those name "
            "their arguments: tcp:host=H:port=P)"
        ) from None
    if tls is not None:
        return tls.clientEndpoint(reactor, host, port, timeout)
    return plain_endpoint(reactor, host, port, timeout)


class _OneProtocolFactory(Factory):
    """Hand out one prebuilt protocol, without "Starting factory" log noise."""

    noisy = False

    def __init__(self, protocol: IProtocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> IProtocol:
        return self._protocol


def connect_protocol(
    endpoint: IStreamClientEndpoint, protocol: IProtocol
) -> Deferred[IProtocol]:
    """Like C{twisted.internet.endpoints.connectProtocol}, but quiet."""
    return endpoint.connect(_OneProtocolFactory(protocol))
