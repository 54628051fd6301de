"""``PATH.part.journal``: one record per chunk verified since the last snapshot.

The snapshot (``PATH.part.json``, see L{redesdl.transfer.resume}) is written
atomically with an fsync, so it is taken only every couple of seconds. Between
two snapshots each verified chunk appends one line here, in a single
``write`` on a descriptor opened with ``O_APPEND`` and never fsynced: the line
reaches the page cache, which outlives a killed process (only a machine crash
loses it, and then the chunk's bytes may be lost too). Each record carries the
chunk's hash and a CRC-32 of itself, so a torn or garbled line is ignored and a
record is trusted only for the manifest it names; the chunk's bytes are hashed
again on resume anyway. A snapshot folds the journal: once it is durable the
journal starts over, so it holds at most the chunks verified since. Its header
says how many chunks that snapshot holds, so a snapshot lost since is noticed.
"""

from __future__ import annotations

import os
import zlib
from typing import NamedTuple

from twisted.logger import Logger

from redesdl.manifest import Manifest

MAGIC = "redesdl-journal 1"

#: More than any honest journal holds (4096 chunks at most, ~80 bytes each).
MAX_JOURNAL_BYTES = 16 * 1024 * 1024

#: Messages a person should see even without -v (the CLI shows this namespace).
_notice = Logger(namespace="redesdl.notice")


def journal_path(part: str) -> str:
    return part + ".journal"


def _identity(manifest: Manifest) -> str:
    return f"{MAGIC} {manifest.size} {manifest.sha256} {manifest.chunk_size}"


def encode_record(body: str) -> bytes:
    """C{body} as one journal line, with the CRC-32 that proves it whole."""
    return f"{body} {zlib.crc32(body.encode()):08x}\n".encode()


def decode_record(line: bytes) -> str | None:
    """The body of a whole, intact line; None for a torn or garbled one."""
    if not line.endswith(b"\n"):
        return None
    body, _, checksum = line[:-1].rpartition(b" ")
    try:
        if int(checksum, 16) != zlib.crc32(body) or len(checksum) != 8:
            return None
        return body.decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None


class JournalClaims(NamedTuple):
    """What a journal says: chunks verified, after a snapshot of C{folded}."""

    chunks: list[int]
    folded: int


def _header(line: bytes) -> tuple[str, int] | None:
    """The content identity and folded count of a journal's first line."""
    identity, _, folded = (decode_record(line) or "").rpartition(" ")
    return (identity, int(folded)) if folded.isdigit() else None


def read_journal(part: str, manifest: Manifest) -> JournalClaims | None:
    """The chunks the journal records for C{manifest}.

    None if there is no journal or it was written for another content; records
    that are torn, garbled, out of range or carry another hash are skipped.
    """
    try:
        with open(journal_path(part), "rb") as f:
            lines = f.read(MAX_JOURNAL_BYTES).splitlines(keepends=True)
    except OSError:
        return None
    header = _header(lines[0]) if lines else None
    if header is None or header[0] != _identity(manifest):
        return None
    count = len(manifest.chunk_hashes)
    chunks = set()
    for line in lines[1:]:
        body = decode_record(line)
        index, _, digest = (body or "").partition(" ")
        if not index.isdigit() or int(index) >= count:
            continue
        if manifest.chunk_hashes[int(index)] == digest:
            chunks.add(int(index))
    return JournalClaims(sorted(chunks), header[1])


def journal_names_another(part: str, manifest: Manifest) -> bool:
    """True if a readable journal was written for some other content."""
    try:
        with open(journal_path(part), "rb") as f:
            header = _header(f.readline(256))
    except OSError:
        return False
    return header is not None and header[0] != _identity(manifest)


def remove_journal(part: str) -> None:
    forget(journal_path(part))


def forget(path: str) -> None:
    """Remove a record kept beside a ``.part``, if there is one.

    A record that cannot be removed (a folder planted under its name, a
    read-only folder) is stale at worst: it is said, and the download goes
    on, since a record of another content or a torn one is never trusted.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        _notice.warn("cannot remove {path}: {why}", path=path, why=e.strerror or e)


class Journal:
    """The open journal of one download: appends a record per verified chunk.

    It exists so that no verified chunk is lost when the process dies between
    two snapshots. A disk error stops the journal (with one log line), never
    the download: the snapshot and a recheck still resume it.
    """

    log = Logger()

    def __init__(self, part: str, manifest: Manifest) -> None:
        self._part = part
        self._manifest = manifest
        self._fd: int | None = None

    def restart(self, folded: int) -> None:
        """Empty the journal, once a snapshot of C{folded} chunks is durable."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            if self._fd is None:
                self._fd = os.open(journal_path(self._part), flags, 0o644)
            os.ftruncate(self._fd, 0)
            header = f"{_identity(self._manifest)} {folded}"
            os.write(self._fd, encode_record(header))
        except OSError as e:
            self._failed(e)

    def record(self, index: int) -> None:
        """Note that chunk C{index} verified: one small append, no fsync."""
        if self._fd is None:
            return
        digest = self._manifest.chunk_hashes[index]
        try:
            os.write(self._fd, encode_record(f"{index} {digest}"))
        except OSError as e:
            self._failed(e)

    def _failed(self, error: OSError) -> None:
        self.log.warn(
            "cannot write {path}: {error}; resuming will rely on the snapshot",
            path=journal_path(self._part),
            error=error.strerror,
        )
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
