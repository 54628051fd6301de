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

Loading this module loads the TLS stack (pyOpenSSL, cryptography); a program
reaches it through L{redesdl.tlsoptions.tls_from_options}, only when it was
given the TLS options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS

from redesdl.leantls import LeanTLSClientEndpoint, lean_tls_factory
from redesdl.tlsoptions import TLSFileError


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
