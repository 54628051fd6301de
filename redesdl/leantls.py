"""A TLS transport that hands TCP one write per application write.

Twisted's L{TLSMemoryBIOProtocol} encrypts an application write one 16 KiB
record at a time and, after each record, reads that record out of OpenSSL
and writes it to the TCP transport. For a chunk server sending 256 KiB
blocks that is, per block, 16 copied slices, 16 reads from OpenSSL and 16
TCP writes: about a quarter of a secondary's CPU under TLS.
L{LeanTLSTransport} encrypts every record of a write from slices of one
memoryview, then reads all the ciphertext out at once and writes it to TCP
in one call. The handshake, shutdown, errors and producers stay Twisted's.

It replaces two private methods of Twisted's class, so L{lean_tls_factory}
uses it only if that class still has them (a newer Twisted may not); if
not, Twisted's own transport is used, correct and slower.
"""

from __future__ import annotations

from typing import Any

from OpenSSL.SSL import Error, WantReadError
from twisted.internet.protocol import Factory
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure

#: The most plaintext one TLS record carries.
RECORD = 16 * 1024
#: Bytes read out of OpenSSL per call: a whole 256 KiB block's records.
CIPHERTEXT_READ = 512 * 1024

_RELIES_ON = (
    "_write",
    "_flushSendBIO",
    "_bufferedWrite",
    "_tlsShutdownFinished",
)


class LeanTLSTransport(BufferingTLSTransport):
    """Twisted's TLS transport, with one TCP write per application write."""

    def _write(self, data: Any) -> None:
        if self._lostTLSConnection:
            return
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            try:
                sent += self._tlsConnection.send(view[sent : sent + RECORD])
            except WantReadError:
                self._bufferedWrite(bytes(view[sent:]))
                break
            except Error:
                self._tlsShutdownFinished(Failure())
                return
        self._flushSendBIO()

    def _flushSendBIO(self) -> None:
        pieces = []
        while True:
            try:
                pieces.append(self._tlsConnection.bio_read(CIPHERTEXT_READ))
            except WantReadError:
                break
        if len(pieces) == 1:
            self.transport.write(pieces[0])
        elif pieces:
            self.transport.write(b"".join(pieces))


def lean_tls_available() -> bool:
    """True if Twisted's TLS transport has the methods L{LeanTLSTransport} replaces."""
    return all(
        callable(getattr(BufferingTLSTransport, name, None)) for name in _RELIES_ON
    )


def lean_tls_factory(
    options: Any, is_client: bool, factory: Factory
) -> TLSMemoryBIOFactory:
    """C{factory} behind TLS, with L{LeanTLSTransport} where this Twisted allows."""
    wrapped = TLSMemoryBIOFactory(options, is_client, factory)
    if lean_tls_available():
        wrapped.protocol = LeanTLSTransport
    return wrapped
