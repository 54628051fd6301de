"""The index of a secondary's data folder: which names it serves, and their manifests.

Hashing a large folder takes time, so manifests are computed in a thread and
cached in the state folder keyed by (size, mtime, inode): a restart with
unchanged files hashes nothing. A rescan reports what was added, changed or
removed so the central can be told. Hidden files and folders (such as the
replication staging folder) and symlinks are never indexed or served, and
L{open_indexed} refuses a served file that became a symlink or something
other than a regular file since. A cache with a wrong type in any field is
set aside (``index.json.corrupt``) and everything is hashed again.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from redesdl.jsonfile import field_path, read_json, write_json_atomic
from redesdl.manifest import Manifest, build_manifest, file_sha256
from redesdl.names import name_problem
from redesdl.protocol.errors import ProtocolError

CACHE_VERSION = 1
#: Hidden folder in the data folder where corrupt copies are set aside.
CORRUPT_FOLDER = ".redesdl-corrupt"
#: Hidden folder in the data folder where files removed from the cluster go.
REMOVED_FOLDER = ".redesdl-removed"

StatKey = tuple[int, int, int]


def free_path(path: FilePath) -> FilePath:
    """C{path}, or C{path.1}, C{path.2}...: the first that does not exist yet."""
    candidate, number = path, 0
    while os.path.lexists(candidate.path):
        number += 1
        candidate = path.siblingExtension(f".{number}")
    return candidate


def stat_key(path: str) -> StatKey:
    st = os.stat(path, follow_symlinks=False)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def walk_data_folder(
    root: str, skipped: dict[str, str] | None = None
) -> dict[str, tuple[str, StatKey]]:
    """Every servable regular file under C{root}: name -> (path, stat key).

    Files left out because of their names are added to C{skipped}, with why.
    """
    found: dict[str, tuple[str, StatKey]] = {}
    for directory, subdirectories, files in os.walk(root, onerror=_raise):
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
        relative = os.path.relpath(directory, root)
        for filename in files:
            name = filename if relative == "." else f"{relative}/{filename}"
            name = name.replace(os.sep, "/")
            path = os.path.join(directory, filename)
            problem = name_problem(name)
            if problem is not None and skipped is not None and filename[0] != ".":
                # Hidden files are left out on purpose (our staging area is one).
                skipped[name] = problem
            if problem is not None or os.path.islink(path):
                continue
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            if os.path.stat.S_ISREG(st.st_mode):
                found[name] = (path, (st.st_size, st.st_mtime_ns, st.st_ino))
    return found


def _raise(error: OSError) -> None:
    raise error


#: How a served file is opened: never through a symlink, never blocking on
#: a FIFO put in its place, never inherited by a child process.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_indexed(path: str, root: str | None = None) -> int:
    """A read-only descriptor on the indexed regular file at C{path}.

    A symlink at C{path} fails with ELOOP; anything but a regular file (a
    FIFO, a device, a folder) with EINVAL. With C{root} (the data folder),
    every folder between it and the file is opened without following
    symlinks too, so a folder swapped for a link cannot lead outside.
    """
    if root is None:
        fd = os.open(path, OPEN_FLAGS)
    else:
        fd = _open_beneath(root, os.path.relpath(path, root).split(os.sep))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_beneath(root: str, parts: list[str]) -> int:
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise OSError(errno.EINVAL, "not inside the data folder", os.sep.join(parts))
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(
                part,
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=folder,
            )
            os.close(folder)
            folder = inner
        return os.open(parts[-1], OPEN_FLAGS, dir_fd=folder)
    finally:
        os.close(folder)


def check_cache(value: Any) -> None:
    """Raise ValueError naming the first field of an index cache that is wrong.

    A cache of another version passes: it is ignored, not set aside.
    """
    if not isinstance(value, dict):
        raise ValueError("the document: expected an object")
    version = value.get("version")
    if type(version) is not int:
        raise ValueError("field version: expected a whole number")
    if version != CACHE_VERSION:
        return
    files = value.get("files")
    if not isinstance(files, dict):
        raise ValueError("field files: expected an object")
    for name, cached in files.items():
        where = field_path("files", name)
        if not isinstance(cached, dict):
            raise ValueError(f"field {where}: expected an object")
        key = cached.get("stat")
        if not (
            isinstance(key, list) and len(key) == 3 and all(type(n) is int for n in key)
        ):
            raise ValueError(f"field {where}.stat: expected 3 whole numbers")
        try:
            manifest = Manifest.from_wire(cached.get("manifest"))
        except (ProtocolError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"field {where}.manifest: {e}") from None
        if manifest.name != name:
            raise ValueError(f"field {where}.manifest: it names another file")


@dataclass(frozen=True)
class IndexEntry:
    """One served file: its manifest, where it lives, and its stat when hashed."""

    manifest: Manifest
    path: str
    stat: StatKey


@dataclass
class IndexChanges:
    """What a scan found: new or changed files, and names that disappeared."""

    added: list[Manifest] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class DataIndex:
    """The files one secondary serves, hashed once and remembered across restarts."""

    log = Logger()

    def __init__(
        self,
        data: FilePath,
        cache: FilePath,
        runInThread: Callable[..., Deferred[Any]] = deferToThread,
    ) -> None:
        self.data = data
        self._cacheFile = cache
        self._runInThread = runInThread
        self.entries: dict[str, IndexEntry] = {}
        self._cached = self._loadCache()
        self._scanning = False
        #: Names left out for being unservable, already said in the log.
        self._skipped_said: set[str] = set()
        self._waiters: list[Deferred[IndexChanges]] = []
        self.listeners: list[Callable[[IndexChanges], None]] = []

    def lookup(self, name: str, sha256: str) -> IndexEntry:
        """The entry serving C{name} with content C{sha256}, or a not_found error."""
        entry = self.entries.get(name)
        if entry is None or entry.manifest.sha256 != sha256:
            raise ProtocolError("not_found", f"no file {name!r} with that content here")
        return entry

    def manifests(self) -> list[Manifest]:
        return [entry.manifest for entry in self.entries.values()]

    def scan(self) -> Deferred[IndexChanges]:
        """Rescan the data folder; a call made during a scan shares its result."""
        waiter: Deferred[IndexChanges] = Deferred()
        self._waiters.append(waiter)
        if not self._scanning:
            self._scanning = True
            Deferred.fromCoroutine(self._scan()).addBoth(self._scanDone)
        return waiter

    def _scanDone(self, result: IndexChanges | Failure) -> None:
        self._scanning = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    async def _scan(self) -> IndexChanges:
        # Names adopted while the walk runs are not in its result; they must
        # not be taken for removals.
        before = set(self.entries)
        try:
            skipped: dict[str, str] = {}
            found = await self._runInThread(walk_data_folder, self.data.path, skipped)
        except OSError as e:
            self.log.error(
                "cannot read data folder {path}: {error}", path=self.data.path, error=e
            )
            return IndexChanges()
        for name in sorted(set(skipped) - self._skipped_said):
            self.log.warn("not serving {name}: {why}", name=name, why=skipped[name])
        # Said once each while they stay; a name seen again later is said again.
        self._skipped_said = set(skipped)
        changes = IndexChanges()
        for name in sorted((before & set(self.entries)) - set(found)):
            del self.entries[name]
            changes.removed.append(name)
        for name, (path, key) in sorted(found.items()):
            entry = self.entries.get(name)
            if entry is not None and entry.stat == key:
                continue
            manifest = await self._manifestFor(name, path, key)
            if manifest is None:
                if entry is not None:
                    del self.entries[name]
                    changes.removed.append(name)
                continue
            self.entries[name] = IndexEntry(manifest, path, key)
            if entry is None or entry.manifest != manifest:
                changes.added.append(manifest)
        if changes:
            self._saveCache()
            self._notify(changes)
        return changes

    async def _manifestFor(self, name: str, path: str, key: StatKey) -> Manifest | None:
        cached = self._cached.pop(name, None)
        if cached is not None and tuple(cached["stat"]) == key:
            return Manifest.from_wire(cached["manifest"])
        self.log.info("hashing {name} ({size} bytes)", name=name, size=key[0])
        try:
            manifest = await self._runInThread(build_manifest, path, name)
            if stat_key(path) != key:
                raise OSError("it changed while it was hashed")
        except OSError as e:
            self.log.warn("not serving {name} yet: {error}", name=name, error=e)
            return None
        return manifest

    async def recheck(self, name: str) -> bool:
        """Hash C{name} again, cache or not; set it aside if its bytes changed.

        A client reported a chunk that did not match (bit rot keeps the mtime,
        so the cache cannot see it). A corrupt copy is moved into the hidden
        L{CORRUPT_FOLDER}, never served again, and reported removed, so the
        central has a good copy replicated back.
        """
        entry = self.entries.get(name)
        if entry is None:
            return False
        try:
            manifest = await self._runInThread(build_manifest, entry.path, name)
        except OSError:
            manifest = None
        if manifest == entry.manifest:
            return True
        self._setAside(name, entry.path)
        self.entries.pop(name, None)
        self._saveCache()
        self._notify(IndexChanges(removed=[name]))
        return False

    def _setAside(self, name: str, path: str) -> None:
        """Move a corrupt copy into the hidden L{CORRUPT_FOLDER}, never served."""
        aside = self.data.child(CORRUPT_FOLDER).descendant(name.split("/"))
        try:
            aside.parent().makedirs(ignoreExistingDirectory=True)
            os.replace(path, aside.path)
        except OSError as e:
            self.log.error("cannot set aside {path}: {error}", path=path, error=e)
        self.log.warn(
            "{name} is corrupt; moved to {aside}", name=name, aside=aside.path
        )

    def withdraw(self, name: str, sha256: str) -> str | None:
        """Move our copy of C{name} into L{REMOVED_FOLDER} if it is C{sha256}.

        The file was removed from the cluster; it is kept, unserved, for the
        operator to delete or restore. Returns where it went, or None when we
        hold no such copy (or it could not be moved, which is logged).
        """
        entry = self.entries.get(name)
        if entry is None or entry.manifest.sha256 != sha256:
            return None
        aside = free_path(self.data.child(REMOVED_FOLDER).descendant(name.split("/")))
        try:
            aside.parent().makedirs(ignoreExistingDirectory=True)
            os.replace(entry.path, aside.path)
        except OSError as e:
            self.log.error(
                "cannot move {path} aside: {error}", path=entry.path, error=e
            )
            return None
        del self.entries[name]
        self._saveCache()
        self._notify(IndexChanges(removed=[name]))
        return aside.path

    async def adopt(self, manifest: Manifest, path: str) -> bool:
        """Serve a copy we just wrote, once our own hash of it matches C{manifest}.

        Replication verified every chunk against C{manifest} as it landed;
        hashing the placed file again is the last check that what we serve is
        what the central vouches for, whatever happened between the rename
        and now. The whole file's SHA-256 is enough for that: it changes with
        any byte, and the chunks it is made of were each checked already, so
        hashing them again (as L{build_manifest} would: a second SHA-256 pass,
        0.65 CPU-s/GiB) proves nothing more. A copy that does not match is
        set aside and never served.
        """
        try:
            key = stat_key(path)
            sha256 = await self._runInThread(file_sha256, path)
        except OSError as e:
            self.log.warn("cannot check {path}: {error}", path=path, error=e)
            return False
        if (key[0], sha256) != (manifest.size, manifest.sha256):
            self._setAside(manifest.name, path)
            return False
        known = self.entries.get(manifest.name)
        self.entries[manifest.name] = IndexEntry(manifest, path, key)
        self._saveCache()
        if known is None or known.manifest != manifest:
            self._notify(IndexChanges(added=[manifest]))
        return True

    def _notify(self, changes: IndexChanges) -> None:
        for listener in list(self.listeners):
            listener(changes)

    def open(self, entry: IndexEntry) -> int:
        """A descriptor on C{entry}'s file, by L{open_indexed} from the data folder."""
        return open_indexed(entry.path, self.data.path)

    def _loadCache(self) -> dict[str, dict[str, Any]]:
        cache = read_json(self._cacheFile, {}, check=check_cache)
        if cache.get("version") != CACHE_VERSION:
            return {}
        files: dict[str, dict[str, Any]] = cache.get("files", {})
        return files

    def _saveCache(self) -> None:
        files = {
            name: {"stat": list(entry.stat), "manifest": entry.manifest.to_wire()}
            for name, entry in self.entries.items()
        }
        try:
            write_json_atomic(
                self._cacheFile, {"version": CACHE_VERSION, "files": files}
            )
        except OSError as e:
            self.log.error(
                "cannot write index cache {path}: {error}",
                path=self._cacheFile.path,
                error=e,
            )
