"""The TLS options every redesdl program takes, read without loading the TLS
stack until they are given.

pyOpenSSL and cryptography cost a command about 35 ms and 12 MiB to load.
L{redesdl.tls} is imported here, only when the options are given; the
client, run without them, does not load the TLS stack at all (see
L{redesdl.client.launch}). The daemons load it anyway: Twisted's reactor
imports pyOpenSSL whenever it is installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redesdl.tls import TLSConfig

#: The options, as C{twisted.python.usage} parameters (the daemons').
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


def tls_from_options(config: Mapping[str, Any]) -> TLSConfig | None:
    """The TLS config C{config}'s C{tls-*} options name; None if none are given.

    Raises L{TLSFileError} if only some are given or a file is bad.
    """
    paths = [config.get(name) for name in ("tls-ca", "tls-cert", "tls-key")]
    if all(path is None for path in paths):
        return None
    if not all(paths):
        # Given empty (an unset shell variable) is not given: plain TCP
        # where TLS was asked would go unnoticed.
        raise TLSFileError(
            "--tls-ca, --tls-cert and --tls-key go together, each naming a file"
        )
    from redesdl.tls import TLSConfig

    return TLSConfig.load(*paths)
