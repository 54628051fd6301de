"""Manifests: what a file's bytes must be, chunk by chunk.

A manifest lists a file's size, its chunk size (derived from the size alone,
so every replica splits the same way), the SHA-256 of every chunk and of the
whole file. Its *root* is the SHA-256 of the concatenated chunk digests: the
central vouches for ``(size, sha256, root)`` and a client checks a manifest
it got from any secondary against that root before trusting its chunk hashes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from redesdl.fsutil import open_regular
from redesdl.names import validate_name
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.fields import count, digest, items, text

MIN_CHUNK_SIZE = 256 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
TARGET_CHUNKS = 64
MAX_CHUNKS = 4096
_READ_BLOCK = 1024 * 1024


def chunk_size_for(size: int) -> int:
    """The chunk size of a file of C{size} bytes: a power of two.

    About L{TARGET_CHUNKS} chunks between 256 KiB and 16 MiB, so a 1 MiB file
    still splits four ways; larger for huge files, to bound the manifest.
    """
    chunk = MIN_CHUNK_SIZE
    while chunk < MAX_CHUNK_SIZE and chunk * TARGET_CHUNKS < size:
        chunk *= 2
    while -(-size // chunk) > MAX_CHUNKS:
        chunk *= 2
    return chunk


def chunk_count(size: int) -> int:
    return -(-size // chunk_size_for(size))


def root_of(chunk_hashes: list[str] | tuple[str, ...]) -> str:
    """The SHA-256 of the concatenated binary chunk digests."""
    return hashlib.sha256(b"".join(bytes.fromhex(h) for h in chunk_hashes)).hexdigest()


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A file as the catalog knows it: its name and content identity."""

    name: str
    size: int
    sha256: str
    root: str

    @property
    def content(self) -> tuple[int, str, str]:
        """Two replicas hold the same bytes only if these agree."""
        return (self.size, self.sha256, self.root)

    @property
    def chunk_size(self) -> int:
        return chunk_size_for(self.size)

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "root": self.root,
        }

    @classmethod
    def from_wire(cls, value: Any) -> FileInfo:
        if not isinstance(value, dict):
            raise ProtocolError("bad_request", "a file entry must be an object")
        return cls(
            name=validate_name(text(value, "name")),
            size=count(value, "size"),
            sha256=digest(value, "sha256"),
            root=digest(value, "root"),
        )


@dataclass(frozen=True)
class Manifest:
    """A file's chunk hashes, enough to verify every byte of a download."""

    name: str
    size: int
    sha256: str
    chunk_hashes: tuple[str, ...]

    @property
    def chunk_size(self) -> int:
        return chunk_size_for(self.size)

    @property
    def root(self) -> str:
        return root_of(self.chunk_hashes)

    @property
    def info(self) -> FileInfo:
        return FileInfo(self.name, self.size, self.sha256, self.root)

    def chunk_range(self, index: int) -> tuple[int, int]:
        """The offset and length of chunk C{index}."""
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.size - offset)

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "chunks": list(self.chunk_hashes),
        }

    @classmethod
    def from_wire(cls, value: Any) -> Manifest:
        if not isinstance(value, dict):
            raise ProtocolError("bad_request", "a manifest must be an object")
        size = count(value, "size")
        hashes = items(value, "chunks", max_items=MAX_CHUNKS)
        if len(hashes) != chunk_count(size):
            raise ProtocolError("bad_request", "chunk count does not match the size")
        for i in range(len(hashes)):
            digest({"h": hashes[i]}, "h")
        return cls(
            name=validate_name(text(value, "name")),
            size=size,
            sha256=digest(value, "sha256"),
            chunk_hashes=tuple(hashes),
        )

    def matches(self, info: FileInfo) -> bool:
        """True if this manifest describes the content the central vouches for."""
        return self.info.content == info.content


def build_manifest(path: str, name: str) -> Manifest:
    """Hash the file at C{path} (blocking: run it in a thread)."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        chunk_size = chunk_size_for(size)
        whole = hashlib.sha256()
        hashes = []
        while True:
            chunk = hashlib.sha256()
            left = chunk_size
            while left:
                block = f.read(min(_READ_BLOCK, left))
                if not block:
                    break
                chunk.update(block)
                whole.update(block)
                left -= len(block)
            if left == chunk_size:
                break
            hashes.append(chunk.hexdigest())
            if left:
                break
    if len(hashes) != chunk_count(size):
        raise OSError(f"{path} changed size while it was hashed")
    return Manifest(
        name=name, size=size, sha256=whole.hexdigest(), chunk_hashes=tuple(hashes)
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a whole file, as ``sha256sum`` prints it (blocking)."""
    digest = hashlib.sha256()
    with open_regular(path) as f:
        while block := f.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()
