"""The ``redesdl`` command's entry point: the client is loaded with the
cyclic garbage collector paused.

Importing Twisted and the client builds about 78,000 objects the collector
tracks, which live until exit, and it walked them again and again while they
were built: about 11 ms of each one-shot command's 0.2 s start here. Nothing built
then is garbage worth collecting, so the collector waits until
L{redesdl.client.cli.main} has frozen it all out of every later collection.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import NoReturn


def main() -> NoReturn:
    gc.disable()
    from redesdl.client.cli import main as run_client

    run_client()
