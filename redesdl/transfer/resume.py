"""Resuming a download: what ``PATH.part`` holds, and whether to trust it.

Beside ``PATH.part`` the client keeps a snapshot, ``PATH.part.json``: the
content it is downloading (size, sha256, chunk hashes) and the chunks already
verified, rewritten atomically (temporary file, fsync, rename) every couple of
seconds and when the client stops, and a journal, ``PATH.part.journal``
(L{redesdl.transfer.journal}), one record per chunk verified since. Both are
removed when the download completes.

A later ``get`` of the same content to the same PATH claims the chunks of the
snapshot and of the journal and hashes each again (a crash may have lost bytes
that were never fsynced), keeping those that match. A ``.part`` with neither
(killed before anything was recorded, or the state was lost) is rechecked: every
chunk is hashed against the manifest, as BitTorrent rechecks its pieces. A
``.part`` whose state names another content is discarded.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from twisted.python.filepath import FilePath

from redesdl.jsonfile import read_json, write_json_atomic
from redesdl.manifest import Manifest
from redesdl.transfer.journal import (
    forget,
    journal_names_another,
    read_journal,
    remove_journal,
)

STATE_VERSION = 1


def state_path(part: str) -> FilePath:
    return FilePath(part + ".json")


def _read_state(part: str) -> dict[str, Any] | None:
    state = read_json(state_path(part), None)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return None
    return state


def load_claimed(part: str, manifest: Manifest) -> list[int] | None:
    """Chunks the snapshot claims for C{manifest}, or None if it is another
    content (or there is no usable snapshot)."""
    return _claims(_read_state(part), manifest)


def _claims(state: dict[str, Any] | None, manifest: Manifest) -> list[int] | None:
    if state is None or state.get("manifest") != manifest.to_wire():
        return None
    claimed = state.get("verified")
    if not isinstance(claimed, list):
        return None
    count = len(manifest.chunk_hashes)
    return sorted({i for i in claimed if type(i) is int and 0 <= i < count})


def chunks_to_check(part: str, manifest: Manifest) -> tuple[list[int], bool] | None:
    """The chunks of C{part} worth hashing again, and whether that is a recheck.

    The snapshot's and the journal's claims when they were written for
    C{manifest}; every chunk (a recheck) when there is no usable state, or the
    journal follows a snapshot that is gone; None when the state names
    another content, so the ``.part`` is started over.
    """
    state = _read_state(part)
    snapshot = _claims(state, manifest)
    journal = read_journal(part, manifest)
    everything = list(range(len(manifest.chunk_hashes)))
    if snapshot is None and journal is not None and journal.folded:
        # The journal follows a snapshot that is gone: trust only the bytes.
        return everything, True
    if snapshot is not None or journal is not None:
        return sorted({*(snapshot or ()), *(journal.chunks if journal else ())}), False
    if state is not None or journal_names_another(part, manifest):
        return None
    return everything, True


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
    """Remove the snapshot and the journal (the download completed)."""
    forget(state_path(part).path)
    remove_journal(part)


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
