"""Turn the ``--central`` value into a client endpoint.

Users type ``HOST:PORT``; operators may give any Twisted client endpoint
string instead (``tls:...``, ``unix:path=...``), recognised by its ``=``.
With a L{TLSConfig}, ``HOST:PORT`` is reached over mutual TLS.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, clientFromString
from twisted.internet.interfaces import IProtocol, IStreamClientEndpoint
from twisted.internet.protocol import Factory

from redesdl.protocol.sources import parse_host_port
from redesdl.tls import TLSConfig


def central_endpoint(
    reactor: Any, value: str, timeout: float = 10.0, tls: TLSConfig | None = None
) -> IStreamClientEndpoint:
    """The endpoint for C{value}; ValueError if it is neither form.

    With C{tls}, a C{HOST:PORT} is reached over mutual TLS; an endpoint
    string is taken as it is.
    """
    if "=" in value:
        try:
            return clientFromString(reactor, value)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{value!r} is not a client endpoint ({e})") from None
    host, port = parse_host_port(value)
    if tls is not None:
        return tls.clientEndpoint(reactor, host, port, timeout)
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


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
