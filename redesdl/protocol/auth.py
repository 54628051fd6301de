"""The cluster secret: how a secondary and the central prove they belong.

Both hold the same secret file. On connecting, the secondary sends a fresh
nonce in its ``hello``; the central answers with a ``challenge`` carrying its
own fresh nonce; the secondary answers with an HMAC over both nonces and its
id, and the central's ``welcome`` carries an HMAC over both nonces the other
way round. The secret never crosses the wire, an answer recorded on one
connection is useless on the next (the central's nonce is new each time), and
a fake central cannot pass for the real one. Download tickets use a key
derived from the same secret (see L{redesdl.protocol.tickets}).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import stat

#: The shortest secret accepted, in bytes (after surrounding whitespace).
MIN_SECRET_BYTES = 16
_NONCE = re.compile(r"[0-9a-f]{32}")


class SecretFileError(Exception):
    """The secret file is missing, unreadable, too short or too open."""


def new_nonce() -> str:
    return secrets.token_hex(16)


def is_nonce(value: object) -> bool:
    return isinstance(value, str) and bool(_NONCE.fullmatch(value))


class ClusterSecret:
    """Prove and check possession of the secret, for one purpose at a time."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def mac(self, purpose: str, *parts: str | int) -> str:
        """An HMAC-SHA256 over C{purpose} and C{parts}, unambiguously joined."""
        message = json.dumps(["redesdl-v1", purpose, *parts]).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(self, proof: object, purpose: str, *parts: str | int) -> bool:
        # compare_digest refuses non-ASCII strings with a TypeError.
        if not isinstance(proof, str) or not proof.isascii():
            return False
        return hmac.compare_digest(proof, self.mac(purpose, *parts))

    def derive(self, purpose: str) -> ClusterSecret:
        """A separate key for C{purpose}, so no MAC can stand in for another's."""
        return ClusterSecret(bytes.fromhex(self.mac("derive", purpose)))


#: The longest secret file read; a longer one is not a secret file.
MAX_SECRET_FILE_BYTES = 4096
_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def load_secret(path: str) -> ClusterSecret:
    """Read the secret at C{path}; L{SecretFileError} says what is wrong.

    It must be a regular file: opened without following a symlink or
    blocking on a FIFO, then checked with C{fstat}, so neither a link nor a
    device put in its place is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SecretFileError(
                f"the secret file {path} is a symbolic link; name the file itself"
            ) from None
        raise SecretFileError(
            f"cannot read the secret file {path}: {e.strerror}"
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise SecretFileError(
                f"the secret file {path} is {kind}, not a regular file"
            )
        content = os.read(fd, MAX_SECRET_FILE_BYTES + 1)
    except OSError as e:
        raise SecretFileError(
            f"cannot read the secret file {path}: {e.strerror}"
        ) from None
    finally:
        os.close(fd)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(
            f"the secret file {path} is open to other users "
            f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        )
    if len(content) > MAX_SECRET_FILE_BYTES:
        raise SecretFileError(
            f"the secret file {path} holds more than {MAX_SECRET_FILE_BYTES} bytes"
        )
    key = content.strip()
    if len(key) < MIN_SECRET_BYTES:
        raise SecretFileError(
            f"the secret file {path} holds fewer than {MIN_SECRET_BYTES} bytes; "
            f"make one with: head -c 32 /dev/urandom | base64 > {path}"
        )
    return ClusterSecret(key)
