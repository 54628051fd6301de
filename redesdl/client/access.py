"""How a client reaches the cluster: the central, its own token, and TLS.

The token is a random value kept in the client's state folder. The central
binds each client name to the token of the first client whose download it
counted under that name, so one client cannot add to another's statistics.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.interfaces import IStreamClientEndpoint

from redesdl.tls import plain_endpoint

#: The token of a client with no state folder (tests, embedded use).
EPHEMERAL_TOKEN = secrets.token_hex(32)


@dataclass(frozen=True)
class ClusterAccess:
    """Everything a download needs to talk to the cluster, besides a name."""

    central: IStreamClientEndpoint
    token: str = EPHEMERAL_TOKEN
    #: Called as (reactor, host, port, timeout) for each secondary to reach.
    connectSource: Callable[..., IStreamClientEndpoint] = plain_endpoint


def load_client_token(path: Path) -> str:
    """The token stored at C{path}, created (readable by us alone) if missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    token = secrets.token_hex(32)
    with os.fdopen(fd, "w") as token_file:
        token_file.write(token + "\n")
        token_file.flush()
        os.fsync(token_file.fileno())
    return token
