"""The ``redesdl`` command's entry point: the options are read before the
client is loaded, and the client is loaded with the cyclic garbage collector
paused and, unless the command may use TLS, without a TLS stack.

Importing Twisted and the client builds about 78,000 objects the collector
tracks, which live until exit, and it walked them again and again while they
were built: about 11 ms of each one-shot command's 0.2 s start here. Nothing built
then is garbage worth collecting, so the collector waits until
L{redesdl.client.cli.run_command} has frozen it all out of every later
collection.

Twisted's reactor and endpoints load pyOpenSSL, and with it cryptography,
whenever it is installed: about 35 ms of every command's start and 12 MiB of
its memory, for a command that speaks plain TCP. Twisted is built to run
without pyOpenSSL (TLS is its optional extra), so a command that cannot open
a TLS connection (L{redesdl.client.options.needs_tls_stack}) tells Python
that pyOpenSSL is absent before anything imports it.
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import NoReturn

#: The package Twisted's TLS support imports first; refusing it leaves the
#: rest of the TLS stack (cryptography, service_identity) unloaded too.
PYOPENSSL = "OpenSSL"


def leave_out_tls_stack() -> None:
    """Make every later C{import OpenSSL} in this process fail, so that Twisted
    takes its no-TLS paths (the import system's documented C{None} entry)."""
    if PYOPENSSL not in sys.modules:
        sys.modules[PYOPENSSL] = None  # type: ignore[assignment]


def main() -> NoReturn:
    """Run the command the process's arguments name."""
    gc.disable()
    from redesdl.client.options import build_parser, needs_tls_stack

    args = build_parser().parse_args()
    if not needs_tls_stack(args):
        leave_out_tls_stack()
    from redesdl.client.cli import run_command

    run_command(args)
