"""Resuming a download: what ``PATH.part`` holds, and whether to trust it.

Beside ``PATH.part`` the client keeps ``PATH.part.json``: the content it is
downloading (size, sha256, root, chunk hashes) and the chunks already
verified. It is rewritten atomically every couple of seconds and when the
client stops, and removed when the download completes. A later ``get`` of the
same content to the same PATH checks each claimed chunk again against its
hash (a crash may have lost bytes that were never fsynced) and keeps those
that match; a ``.part`` of another content is discarded.
"""

from __future__ import annotations

import hashlib
import os

from twisted.python.filepath import FilePath

from redesdl.jsonfile import read_json, write_json_atomic
from redesdl.manifest import Manifest

STATE_VERSION = 1


def state_path(part: str) -> FilePath:
    return FilePath(part + ".json")


def load_claimed(part: str, manifest: Manifest) -> list[int] | None:
    """Chunks the state file claims for C{manifest}, or None if it is another
    content (or there is no usable state)."""
    state = read_json(state_path(part), None)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return None
    if state.get("manifest") != manifest.to_wire():
        return None
    claimed = state.get("verified")
    if not isinstance(claimed, list):
        return None
    count = len(manifest.chunk_hashes)
    return sorted({i for i in claimed if type(i) is int and 0 <= i < count})


def save_state(part: str, manifest: Manifest, verified: set[int]) -> None:
    write_json_atomic(
        state_path(part),
        {
            "version": STATE_VERSION,
            "manifest": manifest.to_wire(),
            "verified": sorted(verified),
        },
    )


def remove_state(part: str) -> None:
    try:
        os.unlink(state_path(part).path)
    except FileNotFoundError:
        pass


def still_valid(fd: int, manifest: Manifest, claimed: list[int]) -> list[int]:
    """The claimed chunks whose bytes in C{fd} still match (blocking: a thread)."""
    valid = []
    for index in claimed:
        offset, length = manifest.chunk_range(index)
        digest = hashlib.sha256()
        position, left = offset, length
        while left:
            block = os.pread(fd, min(left, 1024 * 1024), position)
            if not block:
                break
            digest.update(block)
            position += len(block)
            left -= len(block)
        if not left and digest.hexdigest() == manifest.chunk_hashes[index]:
            valid.append(index)
    return valid
