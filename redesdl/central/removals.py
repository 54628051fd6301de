"""Files an operator removed from the cluster, remembered across restarts.

Removing a file means every secondary moves its copy aside; without a
record, the next secondary that (re)registers with a copy would list it
again and replication would copy it everywhere once more. A removal is of a
name *and* its content: a file later put back under that name with other
bytes is served as any new file, while a stale copy of the removed bytes is
moved aside wherever it turns up. The record is one small JSON file in the
central's state folder, replaced atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from twisted.logger import Logger
from twisted.python.filepath import FilePath

from redesdl.jsonfile import read_json, write_json_atomic

SCHEMA = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_removals(value: Any) -> None:
    """Raise ValueError unless C{value} is a removals document."""
    if not isinstance(value, dict) or value.get("schema") != SCHEMA:
        raise ValueError("not a removals document of schema 1")
    removed = value.get("removed")
    if not isinstance(removed, dict):
        raise ValueError("field removed: expected an object")
    for name, digests in removed.items():
        if not isinstance(digests, list) or not all(
            isinstance(d, str) and _SHA256.fullmatch(d) for d in digests
        ):
            raise ValueError(f"field removed.{name}: expected a list of sha256")


class Removals:
    """Which (name, content) pairs were removed; kept in a file once given one."""

    log = Logger()

    def __init__(self) -> None:
        self._removed: dict[str, set[str]] = {}
        self._file: FilePath | None = None

    def keep_in(self, path: FilePath) -> None:
        """Load the removals kept in C{path}, and save every change there."""
        self._file = path
        document = read_json(path, {"schema": SCHEMA, "removed": {}}, check_removals)
        self._removed = {
            name: set(digests) for name, digests in document["removed"].items()
        }

    def covers(self, name: str, sha256: str) -> bool:
        """True if C{name} with content C{sha256} was removed."""
        return sha256 in self._removed.get(name, ())

    def names(self) -> list[str]:
        return sorted(self._removed)

    def add(self, name: str, digests: Iterable[str]) -> None:
        self._removed.setdefault(name, set()).update(digests)
        self._save()

    def forget(self, name: str) -> bool:
        """Allow C{name}'s removed contents again; False if none was removed."""
        if self._removed.pop(name, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        if self._file is None:
            return
        document = {
            "schema": SCHEMA,
            "removed": {name: sorted(d) for name, d in self._removed.items()},
        }
        try:
            write_json_atomic(self._file, document)
        except OSError as e:
            self.log.error(
                "cannot save removals to {path}: {error}",
                path=self._file.path,
                error=e,
            )
