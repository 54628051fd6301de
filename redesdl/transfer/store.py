"""``PATH.part``: the one owner of its descriptor, from reservation to rename.

The whole size is reserved before the first byte arrives (a full disk fails at
once). A ``.part`` left by an interrupted attempt at the same content is kept,
after its claimed chunks are checked again; any other is started over. The
``.part`` is opened with ``O_NOFOLLOW``: a symlink planted there is refused.

Bytes reach the file only through a L{ChunkWriter}, handed out for one chunk
requested from one source: it accepts bytes of that chunk only, never more
than the chunk's length, hashes them as it writes, and closes for good when the
chunk verifies or is taken back. A verified chunk is never written again. An
endgame duplicate (in memory, or in the scratch file ``PATH.part.dup`` when
memory is short) is written only if it verified first and the chunk is still
unverified. The rename happens only when every chunk verified and the size is
right, so integrity holds by construction, whatever a source sends.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading

from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from redesdl.fsutil import rename_no_replace, write_fully
from redesdl.manifest import Manifest
from redesdl.transfer.directio import ALIGNMENT, DirectFile, StagedWrite
from redesdl.transfer.errors import (
    ChunkClosedError,
    ChunkCorruptError,
    DestinationExistsError,
    DiskError,
    IntegrityError,
    OutsideChunkError,
)
from redesdl.transfer.journal import Journal, remove_journal
from redesdl.transfer.partlock import check_part_free, claim_part
from redesdl.transfer.resume import (
    chunks_to_check,
    remove_state,
    save_state,
    still_valid,
)
from redesdl.transfer.writeback import start_writeback
from redesdl.transfer.writeroute import Route, WriteRouter

#: The SHA-256 of no bytes at all: the only valid hash of an empty file.
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: Bytes moved at once when a scratch duplicate is copied by read and write.
COPY_PIECE = 1024 * 1024

#: Why os.copy_file_range may refuse two files it could copy by read and write.
_NO_COPY_FILE_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)

#: Messages a person should see even without -v (the CLI shows this namespace).
notice = Logger(namespace="redesdl.notice")


class ChunkWriter:
    """Write one requested chunk at its offset; safe from a writer thread.

    Every write names its chunk and must fit in the bytes not yet received;
    anything else raises a L{StoreError} and the writer closes for good.

    Bytes go through the page cache as they arrive, unless C{direct} is
    given: then, from the first block boundary after C{router} says the cache
    is too dear (at once, without a router), they are staged and go around
    it. The router is told what each write cost.
    """

    def __init__(
        self,
        fd: int,
        index: int,
        offset: int,
        length: int,
        expected: str,
        direct: DirectFile | None = None,
        router: WriteRouter | None = None,
    ):
        self.index = index
        self.offset = offset
        self.length = length
        self._fd = fd
        self._direct = direct
        self._router = router
        #: The rest of the chunk on its way around the cache, once it goes.
        self._staged: StagedWrite | None = None
        self._expected = expected
        self._hash = hashlib.sha256()
        self._lock = threading.Lock()
        self.received = 0
        self.closed = False
        #: The first refused write or disk error, if any.
        self.error: Exception | None = None

    def write(self, index: int, data: memoryview | bytes) -> None:
        with self._lock:
            if self.closed:
                raise ChunkClosedError(f"chunk {index} is closed to this writer")
            if index != self.index or len(data) > self.length - self.received:
                self.closed = True
                raise OutsideChunkError(
                    f"{len(data)} bytes for chunk {index} do not fit in the "
                    f"{self.length - self.received} left of chunk {self.index}"
                )
            self._hash.update(data)
            view = memoryview(data)
            if self._staged is None and self._goes_direct():
                to_block = -(self.offset + self.received) % ALIGNMENT
                self._write_cached(view[:to_block])
                view = view[to_block:]
                if view:
                    self._staged = self._start_staging()
            if self._staged is None:
                self._write_cached(view)
            else:
                self._staged.add(view)
                self.received += len(view)
                if self.received == self.length:
                    self._staged.finish()
        if self.received == self.length:
            # Whatever went through the page cache (all of it, its start, or a
            # tail) starts for the disk now, not at the final fsync.
            start_writeback(self._fd, self.offset, self.length)

    def _goes_direct(self) -> bool:
        direct = self._direct
        if direct is None or not direct.usable:
            return False
        return self._router is None or self._router.chunk_route() is Route.DIRECT

    def _start_staging(self) -> StagedWrite:
        assert self._direct is not None
        at = self.offset + self.received
        return StagedWrite(self._direct, self._fd, at, self._router)

    def _write_cached(self, view: memoryview) -> None:
        if not view:
            return
        started = Route.CACHED.clock()
        size = len(view)
        while view:
            written = os.pwrite(self._fd, view, self.offset + self.received)
            self.received += written
            view = view[written:]
        if self._router is not None:
            self._router.record(Route.CACHED, size, Route.CACHED.clock() - started)

    @property
    def complete(self) -> bool:
        return self.received == self.length

    def matches(self) -> bool:
        return self.complete and self._hash.hexdigest() == self._expected

    def close(self) -> None:
        """Refuse every later write; wait for one in progress to end."""
        with self._lock:
            self.closed = True
            if self._staged is not None:
                self._staged.discard()


class MemoryCopy:
    """An endgame duplicate, held in memory: exactly its chunk's length.

    The buffer is allocated whole at the first byte and filled in place, so
    it never holds more than the chunk (a growing bytearray over-allocates
    and briefly holds two copies when it moves).
    """

    def __init__(self, index: int, length: int, expected: str) -> None:
        self.index = index
        self.length = length
        self._expected = expected
        self._hash = hashlib.sha256()
        self._buffer: bytearray | None = None
        self.received = 0
        self.closed = False
        self.error: Exception | None = None

    @property
    def data(self) -> bytearray:
        """The bytes received so far (the whole chunk once complete)."""
        if self._buffer is None:
            return bytearray()
        if self.received < self.length:
            return self._buffer[: self.received]
        return self._buffer

    def write(self, index: int, data: memoryview | bytes) -> None:
        if self.closed:
            raise ChunkClosedError(f"chunk {index} is closed to this writer")
        if index != self.index or len(data) > self.length - self.received:
            self.closed = True
            raise OutsideChunkError(f"{len(data)} bytes do not fit in chunk {index}")
        if self._buffer is None:
            self._buffer = bytearray(self.length)
        self._hash.update(data)
        end = self.received + len(data)
        self._buffer[self.received : end] = data
        self.received = end

    @property
    def complete(self) -> bool:
        return self.received == self.length

    def matches(self) -> bool:
        return self.complete and self._hash.hexdigest() == self._expected

    def close(self) -> None:
        self.closed = True


class ScratchCopy(ChunkWriter):
    """An endgame duplicate too big for memory, written to the scratch file.

    Memory stays flat however big the chunks are: the duplicate goes to
    ``PATH.part.dup`` at its chunk's own offset (a sparse file), with the
    same rules and hashing as a L{ChunkWriter}. Its bytes reach the ``.part``
    only through L{ChunkStore.verify}, once they matched. A chunk has one
    scratch copy at a time: a newer one closes the older, whose later bytes
    could otherwise land among the newer's after it matched.
    """


def copy_range(source: int, target: int, offset: int, length: int) -> None:
    """Copy C{length} bytes at C{offset} from one descriptor to the other.

    In the kernel when it can; by read and write, C{COPY_PIECE} at a time,
    when the two files are on different file systems or the kernel cannot.
    """
    done = 0
    try:
        while done < length:
            at = offset + done
            copied = os.copy_file_range(source, target, length - done, at, at)
            if not copied:
                raise OSError(errno.EIO, "the scratch file ended early")
            done += copied
    except OSError as e:
        if e.errno not in _NO_COPY_FILE_RANGE:
            raise
    while done < length:
        piece = memoryview(
            os.pread(source, min(COPY_PIECE, length - done), offset + done)
        )
        if not piece:
            raise OSError(errno.EIO, "the scratch file ended early")
        write_fully(target, piece, offset + done)
        done += len(piece)


class ChunkStore:
    """``PATH.part`` for one download: the only code that writes or renames it."""

    log = Logger()

    def __init__(
        self,
        destination: str,
        part_path: str,
        overwrite: bool,
        direct_io: bool | None = False,
    ) -> None:
        self.destination = destination
        self.path = part_path
        self._overwrite = overwrite
        self._fd: int | None = None
        #: Whether chunks go to disk around the page cache: always (True),
        #: never (False), or once L{router} found the cache too dear (None).
        self._direct_io = direct_io
        self.router = WriteRouter() if direct_io is None else None
        #: The .part opened for direct writes, once open and if allowed.
        self.direct: DirectFile | None = None
        self.manifest: Manifest | None = None
        self._verified: set[int] = set()
        #: The writer each chunk is written through straight to the file.
        self._writers: dict[int, ChunkWriter] = {}
        #: Where each verified chunk is recorded until the next snapshot.
        self._journal: Journal | None = None
        #: The chunks the last snapshot written holds.
        self._snapshot: frozenset[int] = frozenset()
        #: Where endgame duplicates too big for memory go, opened when needed.
        self.scratch_path = part_path + ".dup"
        self._scratch_fd: int | None = None
        #: The scratch duplicates not yet verified or abandoned.
        self._scratch_copies: set[ScratchCopy] = set()

    @property
    def verified(self) -> frozenset[int]:
        return frozenset(self._verified)

    def is_verified(self, index: int) -> bool:
        return index in self._verified

    def check_destination(self) -> None:
        """Fail before any work if PATH cannot or must not be written."""
        folder = os.path.dirname(os.path.abspath(self.destination))
        if not os.path.isdir(folder):
            raise DiskError(f"the folder {folder} does not exist")
        if os.path.lexists(self.destination) and not self._overwrite:
            raise DestinationExistsError(
                f"{self.destination} already exists (use --force to overwrite it)"
            )
        if os.path.islink(self.path):
            raise DiskError(f"{self.path} is a symbolic link; refusing to follow it")
        check_part_free(self.path)

    async def open(self, manifest: Manifest) -> list[int]:
        """Open and reserve the file; return the chunks kept from before.

        The chunks claimed by the snapshot and journal, or every chunk of a
        ``.part`` left without them, are hashed again; those that match are
        kept. The kept chunks go into a fresh snapshot and the journal starts
        over, so each stays as small as one run's progress.
        """
        existed = os.path.lexists(self.path)
        try:
            self._fd = claim_part(self.path)
        except OSError as e:
            raise self._cannot_reserve(manifest, e) from None
        # Duplicates of an earlier attempt are never trusted: no record of them.
        self._remove_scratch()
        claimed: list[int] = []
        keep = rechecking = False
        if existed:
            check = chunks_to_check(self.path, manifest)
            had_bytes = os.fstat(self._fd).st_size > 0
            if check is None and had_bytes:
                notice.warn(
                    "{part} holds another version of {name} (or nothing to trust); "
                    "starting over",
                    part=self.path,
                    name=manifest.name,
                )
            keep = check is not None
            if check is not None and (had_bytes or not check[1]):
                claimed, rechecking = check
        try:
            if not keep:
                os.ftruncate(self._fd, 0)
            os.ftruncate(self._fd, manifest.size)
            if manifest.size:
                os.posix_fallocate(self._fd, 0, manifest.size)
        except OSError as e:
            if not keep:
                # Nothing worth keeping: do not leave an empty .part behind
                # (removed while still ours: the close drops the lock).
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            self.close()
            raise self._cannot_reserve(manifest, e) from None
        self.manifest = manifest
        if self._direct_io is not False and manifest.size:
            self.direct = DirectFile.open(self.path, self._fd)
        if rechecking and claimed:
            notice.info(
                "{part} has no record of its verified chunks; checking its "
                "{chunks} chunks against the manifest",
                part=self.path,
                chunks=len(claimed),
            )
        kept = []
        if claimed:
            kept = await deferToThread(still_valid, self._fd, manifest, claimed)
        self._verified.update(kept)
        if manifest.size and self._verified:
            # The snapshot of what was kept means an fsync: not on the reactor.
            await deferToThread(self._start_journal, manifest)
        elif manifest.size:
            self._start_journal(manifest)
        return kept

    def _cannot_reserve(self, manifest: Manifest, error: OSError) -> DiskError:
        why = "it is a symbolic link" if error.errno == errno.ELOOP else error.strerror
        return DiskError(f"cannot reserve {manifest.size} bytes for {self.path}: {why}")

    def _start_journal(self, manifest: Manifest) -> None:
        """Fold what was kept into the snapshot, then start the journal afresh
        (before any chunk is fetched, so nothing else uses the store)."""
        try:
            if self._verified:
                save_state(self.path, manifest, self._verified)
            else:
                remove_state(self.path)
        except OSError as e:
            # The old journal may hold claims the snapshot lacks: keep it.
            self.log.warn("cannot save {part}.json: {error}", part=self.path, error=e)
            return
        self._snapshot = frozenset(self._verified)
        self._journal = Journal(self.path, manifest)
        self._journal.restart(len(self._snapshot))

    def _chunk(self, index: int) -> tuple[int, int, str]:
        assert self.manifest is not None and self._fd is not None
        offset, length = self.manifest.chunk_range(index)
        return offset, length, self.manifest.chunk_hashes[index]

    def begin(self, index: int) -> ChunkWriter:
        """A writer for chunk C{index} straight to the file.

        A writer still open for that chunk (its request was taken back from a
        source not yet hung up on) is closed first: its later bytes are refused.
        """
        if index in self._verified:
            raise ChunkClosedError(f"chunk {index} is verified already")
        previous = self._writers.pop(index, None)
        if previous is not None:
            previous.close()
        assert self._fd is not None
        offset, length, expected = self._chunk(index)
        # The writer checks before each write that direct writes still work.
        writer = ChunkWriter(
            self._fd, index, offset, length, expected, self.direct, self.router
        )
        self._writers[index] = writer
        return writer

    def begin_copy(self, index: int) -> MemoryCopy:
        """A memory copy of chunk C{index}, for an endgame duplicate."""
        _, length, expected = self._chunk(index)
        return MemoryCopy(index, length, expected)

    def begin_scratch(self, index: int) -> ScratchCopy:
        """A copy of chunk C{index} in the scratch file, for an endgame
        duplicate that does not fit in memory."""
        if index in self._verified:
            raise ChunkClosedError(f"chunk {index} is verified already")
        if self._scratch_fd is None:
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                self._scratch_fd = os.open(self.scratch_path, flags, 0o600)
            except OSError as e:
                why = "it is a symbolic link" if e.errno == errno.ELOOP else e.strerror
                raise DiskError(f"cannot open {self.scratch_path}: {why}") from None
        for older in [c for c in self._scratch_copies if c.index == index]:
            self.abandon(older)
        copy = ScratchCopy(self._scratch_fd, index, *self._chunk(index))
        self._scratch_copies.add(copy)
        return copy

    def abandon(self, writer: ChunkWriter | MemoryCopy) -> None:
        """The request behind C{writer} failed: refuse its later bytes."""
        writer.close()
        if self._writers.get(writer.index) is writer:
            del self._writers[writer.index]
        if isinstance(writer, ScratchCopy):
            self._scratch_copies.discard(writer)
            if not self._scratch_copies and self._scratch_fd is not None:
                # Nothing left in it: give the disk space back.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._scratch_fd, 0)

    def verify(self, writer: ChunkWriter | MemoryCopy) -> bool:
        """Accept C{writer}'s chunk if it is whole and matches; False if too late.

        Raises L{ChunkCorruptError} if its bytes do not match the manifest. A
        duplicate (memory or scratch copy) is written to the file here, only
        if the chunk is still unverified, after its direct writer was closed.
        """
        writer.close()
        try:
            return self._accept(writer)
        finally:
            self.abandon(writer)

    def _accept(self, writer: ChunkWriter | MemoryCopy) -> bool:
        if writer.index in self._verified:
            return False
        if not writer.matches():
            raise ChunkCorruptError("chunk hash mismatch")
        if isinstance(writer, MemoryCopy | ScratchCopy):
            direct = self._writers.pop(writer.index, None)
            if direct is not None:
                direct.close()
            offset, length, _ = self._chunk(writer.index)
            assert self._fd is not None
            try:
                if isinstance(writer, MemoryCopy):
                    write_fully(self._fd, writer.data, offset)
                else:
                    assert self._scratch_fd is not None
                    copy_range(self._scratch_fd, self._fd, offset, length)
            except OSError as e:
                raise DiskError(f"cannot write {self.path}: {e.strerror}") from None
            start_writeback(self._fd, offset, length)
        self._verified.add(writer.index)
        if self._journal is not None:
            # One append to the page cache, no fsync: it outlives a killed
            # process, which is what the journal is for.
            self._journal.record(writer.index)
        return True

    def save_progress(self) -> None:
        """Snapshot which chunks are verified and fold the journal into it.

        Skipped when nothing verified since the last snapshot, so an idle
        download does not fsync every couple of seconds.
        """
        if self.manifest is None or not self.manifest.size:
            return
        if self._snapshot == self._verified:
            return
        try:
            save_state(self.path, self.manifest, self._verified)
        except OSError as e:
            self.log.warn("cannot save {part}.json: {error}", part=self.path, error=e)
            return
        self._snapshot = frozenset(self._verified)
        if self._journal is not None:
            self._journal.restart(len(self._snapshot))

    def check_complete(self) -> None:
        """Raise L{IntegrityError} unless the file is the whole manifest."""
        manifest = self.manifest
        assert manifest is not None and self._fd is not None
        missing = len(manifest.chunk_hashes) - len(self._verified)
        if missing:
            raise IntegrityError(f"{missing} chunks of {manifest.name} never verified")
        if os.fstat(self._fd).st_size != manifest.size:
            raise IntegrityError(f"{self.path} is not {manifest.size} bytes long")
        if manifest.size == 0 and manifest.sha256 != EMPTY_SHA256:
            raise IntegrityError(
                f"{manifest.name} is said to be empty but its sha256 is not "
                "that of an empty file"
            )
        on_disk, ours = os.lstat(self.path), os.fstat(self._fd)
        if (on_disk.st_dev, on_disk.st_ino) != (ours.st_dev, ours.st_ino):
            raise IntegrityError(f"{self.path} was replaced during the download")

    def finish(self) -> None:
        """Check the file is whole, make it durable and move it to PATH."""
        self.check_complete()
        assert self._fd is not None
        try:
            os.fsync(self._fd)
            if self._overwrite:
                os.replace(self.path, self.destination)
            else:
                rename_no_replace(self.path, self.destination)
        except FileExistsError:
            raise DestinationExistsError(
                f"{self.destination} appeared during the download; the data is "
                f"in {self.path}"
            ) from None
        except OSError as e:
            raise DiskError(
                f"cannot move {self.path} into place: {e.strerror}"
            ) from None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        remove_state(self.path)
        if self.router is not None and self.direct is not None:
            self.log.info(
                "{path}: {routes}", path=self.destination, routes=self.router.summary()
            )

    def close(self) -> None:
        for writer in [*self._writers.values(), *self._scratch_copies]:
            writer.close()
        self._writers.clear()
        self._scratch_copies.clear()
        self._remove_scratch()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
            if self._snapshot == self._verified:
                # Folded into a durable snapshot: the snapshot alone resumes.
                remove_journal(self.path)
        if self.direct is not None:
            self.direct.close()
            self.direct = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _remove_scratch(self) -> None:
        """Close and delete the scratch file: its duplicates end with the run."""
        if self._scratch_fd is not None:
            os.close(self._scratch_fd)
            self._scratch_fd = None
        with contextlib.suppress(OSError):
            os.unlink(self.scratch_path)
