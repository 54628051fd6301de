"""Mutual TLS for every hop, every peer checked against one CA.

With ``--tls-ca``, ``--tls-cert`` and ``--tls-key`` every redesdl program
encrypts every connection it makes or accepts: client and secondary to the
central, client and replicating secondary to a secondary. Each side presents
its certificate and checks the other's against the CA; a client also checks
that the server's certificate names the host it dialled (a DNS name or an IP
address in the subjectAltName).

Servers wrap their factory rather than take an ``ssl:`` endpoint string, so
TLS works with any listening endpoint, systemd's sockets included; clients
wrap the endpoint they would have used, so the addresses the central hands
out stay plain ``host:port``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS

from redesdl.leantls import LeanTLSClientEndpoint, lean_tls_factory

TLS_PARAMETERS = [
    [
        "tls-ca",
        None,
        None,
        "CA certificate (PEM) every peer must be signed by [default: none, plain TCP].",
    ],
    ["tls-cert", None, None, "This program's certificate (PEM), signed by the CA."],
    ["tls-key", None, None, "The private key (PEM) of --tls-cert."],
]


class TLSFileError(Exception):
    """A certificate or key file is missing, unreadable or not PEM."""


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as pem:
            return pem.read()
    except OSError as e:
        raise TLSFileError(f"cannot read the {what} {path}: {e.strerror}") from None


@dataclass(frozen=True)
class TLSConfig:
    """One program's CA and own certificate, ready to wrap connections."""

    authority: Certificate
    own: PrivateCertificate

    @classmethod
    def load(cls, ca: str, cert: str, key: str) -> TLSConfig:
        try:
            authority = Certificate.loadPEM(_read(ca, "CA certificate"))
            own = PrivateCertificate.loadPEM(
                _read(cert, "certificate") + b"\n" + _read(key, "private key")
            )
        except TLSFileError:
            raise
        except Exception as e:
            raise TLSFileError(
                f"cannot load the TLS files {ca}, {cert}, {key}: {e}"
            ) from None
        return cls(authority, own)

    @classmethod
    def fromOptions(cls, config: Any) -> TLSConfig | None:
        """The config named by C{config}'s TLS options; None if none are given.

        Raises L{TLSFileError} if only some are given or a file is bad.
        """
        paths = [config.get(name) for name in ("tls-ca", "tls-cert", "tls-key")]
        if not any(paths):
            return None
        if not all(paths):
            raise TLSFileError("--tls-ca, --tls-cert and --tls-key go together")
        return cls.load(*paths)

    def serverFactory(self, factory: Factory) -> Factory:
        """C{factory} behind TLS that requires a client certificate from the CA."""
        options = self.own.options(self.authority)
        return lean_tls_factory(options, False, factory)

    def clientEndpoint(
        self, reactor: Any, host: str, port: int, timeout: float = 10.0
    ) -> IStreamClientEndpoint:
        """A TLS connection to C{host}:C{port} whose certificate must name C{host}."""
        options = optionsForClientTLS(
            host, trustRoot=self.authority, clientCertificate=self.own
        )
        return LeanTLSClientEndpoint(
            options, HostnameEndpoint(reactor, host, port, timeout=timeout)
        )


def plain_endpoint(
    reactor: Any, host: str, port: int, timeout: float = 10.0
) -> IStreamClientEndpoint:
    return HostnameEndpoint(reactor, host, port, timeout=timeout)


def source_connector(tls: TLSConfig | None) -> Any:
    """How to reach a secondary the central named: over TLS if configured."""
    return tls.clientEndpoint if tls is not None else plain_endpoint
