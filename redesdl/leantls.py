"""A TLS transport that hands TCP one write per application write, and the
application one read per socket read.

Twisted's L{TLSMemoryBIOProtocol} works one 16 KiB record at a time. Sending,
it encrypts an application write record by record and, after each, reads
that record out of OpenSSL and writes it to the TCP transport: for a chunk
server sending 256 KiB blocks, 16 copied slices, 16 reads from OpenSSL and
16 TCP writes per block, about a quarter of a secondary's CPU under TLS.
Receiving, it hands the application each record's plaintext as it comes out
of OpenSSL: 64 calls of a downloader's C{dataReceived} per MiB.

L{LeanTLSTransport} encrypts a write in one C{SSL_write} where it can, then
reads all the ciphertext out at once and writes it to TCP in one call; and
it joins the plaintext of the records a socket read
brought (up to L{PLAINTEXT_DELIVERY}) before handing it up. The handshake,
shutdown, errors and producers stay Twisted's.

pyOpenSSL turns on OpenSSL's partial writes for every context, so that
C{SSL_write} returns after each 16 KiB record: into a memory BIO, which
never blocks, that only multiplies the calls (16 per 256 KiB block, each a
Python round trip through pyOpenSSL). L{lean_tls_factory} turns them off
for servers, whose writes are the chunk bytes: one call per block, and the
three secondaries of a download spent 0.69 CPU-s/GiB instead of 0.81 here.
Clients keep pyOpenSSL's setting (their writes are small requests, and a
client context may be shared by connections already made); their writes
still work, a record per call.

It replaces private methods of Twisted's class, so L{lean_tls_factory}
uses it only if that class still has them (a newer Twisted may not); if
not, Twisted's own transport is used, correct and slower.
"""

from __future__ import annotations

from typing import Any

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

#: Bytes read out of OpenSSL per call: a whole 256 KiB block's records.
CIPHERTEXT_READ = 512 * 1024
#: Plaintext joined before it goes to the application: a downloader hands
#: pieces this large to its writer thread as they are.
PLAINTEXT_DELIVERY = 256 * 1024

_RELIES_ON = (
    "_write",
    "_flushSendBIO",
    "_flushReceiveBIO",
    "_bufferedWrite",
    "_shutdownTLS",
    "_tlsShutdownFinished",
)
_FLAGS_READ = ("_aborted", "_lostTLSConnection")
#: OpenSSL's C{SSL_MODE_ENABLE_PARTIAL_WRITE} (ssl.h), which pyOpenSSL sets
#: on every context without naming it.
SSL_MODE_ENABLE_PARTIAL_WRITE = 0x1


class LeanTLSTransport(BufferingTLSTransport):
    """Twisted's TLS transport, with one TCP write per application write."""

    def _write(self, data: Any) -> None:
        if self._lostTLSConnection:
            return
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            try:
                sent += self._tlsConnection.send(view[sent:])
            except WantReadError:
                self._bufferedWrite(bytes(view[sent:]))
                break
            except Error:
                self._tlsShutdownFinished(Failure())
                return
        self._flushSendBIO()

    def _flushReceiveBIO(self) -> None:
        pending: list[bytes] = []
        held = 0
        closed = False
        reason: Failure | None = None
        while not self._lostTLSConnection:
            try:
                piece = self._tlsConnection.recv(2**15)
            except WantReadError:
                break
            except ZeroReturnError:
                closed = True
                break
            except Error:
                closed, reason = True, Failure()
                break
            pending.append(piece)
            held += len(piece)
            if held >= PLAINTEXT_DELIVERY:
                self._deliver(pending)
                pending, held = [], 0
        # What came before a close goes up before the close does, and the
        # application is never called from inside an except block.
        self._deliver(pending)
        if closed:
            if reason is None:
                self._shutdownTLS()
            self._tlsShutdownFinished(reason)
        self._flushSendBIO()

    def _deliver(self, pieces: list[bytes]) -> None:
        if pieces and not self._aborted:
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            ProtocolWrapper.dataReceived(self, data)

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
    """True if Twisted's TLS transport has the methods L{LeanTLSTransport}
    replaces or calls, and the flags it reads."""
    return all(
        callable(getattr(BufferingTLSTransport, name, None)) for name in _RELIES_ON
    ) and all(
        isinstance(getattr(BufferingTLSTransport, name, None), bool)
        for name in _FLAGS_READ
    )


@implementer(IStreamClientEndpoint)
class LeanTLSClientEndpoint:
    """C{wrapped}'s connections, upgraded to TLS as soon as they are made.

    Twisted's C{wrapClientTLS}, with L{lean_tls_factory}'s transport.
    """

    def __init__(self, options: Any, wrapped: IStreamClientEndpoint) -> None:
        self._options = options
        self._wrapped = wrapped

    def connect(self, factory: Factory) -> Deferred[Protocol]:
        tls = lean_tls_factory(self._options, True, factory)
        return self._wrapped.connect(tls).addCallback(
            lambda protocol: protocol.wrappedProtocol
        )


def lean_tls_factory(
    options: Any, is_client: bool, factory: Factory
) -> TLSMemoryBIOFactory:
    """C{factory} behind TLS, with L{LeanTLSTransport} where this Twisted allows."""
    lean = lean_tls_available()
    if lean and not is_client:
        options.getContext().clear_mode(SSL_MODE_ENABLE_PARTIAL_WRITE)
    wrapped = TLSMemoryBIOFactory(options, is_client, factory)
    if lean:
        wrapped.protocol = LeanTLSTransport
    return wrapped
