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

from redesdl.client.errors import UserError
from redesdl.endpoints import plain_endpoint
from redesdl.fsutil import rename_no_replace, write_private_file

#: Shortest token accepted from the file; ours are 64 hex digits.
MIN_TOKEN_LENGTH = 32
#: Longest token the central accepts in a hello.
MAX_TOKEN_LENGTH = 128
#: The token of a client with no state folder (tests, embedded use).
EPHEMERAL_TOKEN = secrets.token_hex(32)


@dataclass(frozen=True)
class ClusterAccess:
    """Everything a download needs to talk to the cluster, besides a name."""

    central: IStreamClientEndpoint
    token: str = EPHEMERAL_TOKEN
    #: Called as (reactor, host, port, timeout) for each secondary to reach.
    connectSource: Callable[..., IStreamClientEndpoint] = plain_endpoint
    #: Seconds the central has to answer each request (None: no limit).
    reply_timeout: float | None = None


def load_client_token(path: Path) -> str:
    """The token stored at C{path}; a new one (readable by us alone) if none.

    A new token is written to a temporary file and linked into place without
    replacing, so two clients starting at once agree on one token. A file
    too short to be a token (a crash while writing it) is replaced.
    """
    existing = _read_token(path)
    if existing is not None:
        return existing
    staged = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    write_private_file(str(staged), f"{secrets.token_hex(32)}\n".encode())
    try:
        rename_no_replace(str(staged), str(path))
    except FileExistsError:
        existing = _read_token(path)
        if existing is not None:
            os.unlink(staged)
            return existing
        os.replace(staged, path)
    token = _read_token(path)
    assert token is not None
    return token


def _read_token(path: Path) -> str | None:
    try:
        token = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        return None
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isalnum():
        # Not one of ours, and replacing it would lose this client's name at
        # the central (its token is bound to the name): the person decides.
        raise UserError(
            f"{path} does not hold a client token (1 line of {MIN_TOKEN_LENGTH}"
            f"-{MAX_TOKEN_LENGTH} letters and digits); remove it to make a new one"
        )
    return token.decode("ascii")
