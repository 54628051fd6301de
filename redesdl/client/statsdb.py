"""The client's statistics store: one SQLite database every client process shares.

Several ``redesdl get`` may end at the same moment; each adds its record in
one short transaction (WAL journal, so readers never wait for a writer and
writers queue on SQLite's lock for up to L{BUSY_SECONDS}), and nothing is
lost, whatever the number of processes. The database stays bounded: totals
and per-file counts are kept forever (per-file for the L{MAX_FILES_KEPT}
files downloaded last), the last L{MAX_DOWNLOADS_KEPT} downloads in detail,
and a chunk timeline (the bulk of a record) only for the last
L{MAX_TIMELINES_KEPT}. docs/stats.md describes it and the JSON it exports.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.logger import Logger

SCHEMA_VERSION = 2
MAX_DOWNLOADS_KEPT = 1000
MAX_TIMELINES_KEPT = 20
MAX_FILES_KEPT = 1000
#: Bytes the write-ahead log is cut back to after each checkpoint.
WAL_BYTES = 1024 * 1024
#: How long a writer waits for another process's transaction to end.
BUSY_SECONDS = 30.0

log = Logger()

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value ANY) STRICT;
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    completed INTEGER NOT NULL, failed INTEGER NOT NULL, bytes INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS files (
    file TEXT PRIMARY KEY, completed INTEGER NOT NULL, failed INTEGER NOT NULL,
    bytes INTEGER NOT NULL, last REAL NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS downloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL,
    timeline TEXT
) STRICT;
"""


class UnusableStoreError(Exception):
    """The database cannot be read as this version's statistics."""


class ClientStatsStore:
    """Add download records and read them back, safely from many processes."""

    def __init__(self, path: str) -> None:
        self.path = path
        #: Records the last L{downloads} left out because they were damaged.
        self.unreadable = 0
        try:
            self._db = self._open()
        except sqlite3.OperationalError:
            raise  # locked, or cannot be opened: nothing wrong with its content
        except (sqlite3.DatabaseError, UnusableStoreError) as e:
            self._set_aside(str(e))
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            self._enter_wal(db)
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA journal_size_limit={WAL_BYTES}")
            with self._transaction(db):
                for statement in _TABLES.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema', ?), ('created', ?)",
                    (SCHEMA_VERSION, time.time()),
                )
                db.execute("INSERT OR IGNORE INTO totals VALUES (1, 0, 0, 0)")
            (version,) = db.execute(
                "SELECT value FROM meta WHERE key = 'schema'"
            ).fetchone()
            if version != SCHEMA_VERSION:
                raise UnusableStoreError(f"schema {version!r}, not {SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _enter_wal(db: sqlite3.Connection) -> None:
        # Switching a new database to WAL needs an exclusive lock, and SQLite
        # may answer "locked" at once rather than through the busy timeout
        # while another process makes the same switch: retry until the same
        # deadline a writer would wait.
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))

    def _set_aside(self, why: str) -> None:
        aside = self.path + ".corrupt"
        log.warn(
            "{path} is unusable ({error}); moved to {aside}, starting fresh",
            path=self.path,
            error=why,
            aside=aside,
        )
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(self.path + suffix, aside + suffix)
            except FileNotFoundError:
                pass

    @staticmethod
    @contextmanager
    def _transaction(db: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE takes the write lock at once: two writers never both read
        # and then fail to upgrade; the second waits (busy timeout) instead.
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def add(self, record: dict[str, Any]) -> None:
        """Count one ended download and keep its record, trimming old ones."""
        db = self._db
        ok = record["result"] == "ok"
        fetched = int(record.get("bytes_fetched", 0))
        details = {k: v for k, v in record.items() if k != "timeline"}
        timeline = record.get("timeline")
        with self._transaction(db):
            db.execute(
                "UPDATE totals SET completed = completed + ?, failed = failed + ?, "
                "bytes = bytes + ?",
                (int(ok), int(not ok), fetched),
            )
            db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?) ON CONFLICT (file) DO "
                "UPDATE SET completed = completed + excluded.completed, "
                "failed = failed + excluded.failed, bytes = bytes + excluded.bytes, "
                "last = excluded.last",
                (record["file"], int(ok), int(not ok), fetched, time.time()),
            )
            db.execute(
                "INSERT INTO downloads (record, timeline) VALUES (?, ?)",
                (
                    json.dumps(details),
                    None if timeline is None else json.dumps(timeline),
                ),
            )
            self._trim(db)

    @staticmethod
    def _trim(db: sqlite3.Connection) -> None:
        db.execute(
            "DELETE FROM downloads WHERE id <= (SELECT max(id) FROM downloads) - ?",
            (MAX_DOWNLOADS_KEPT,),
        )
        db.execute(
            "UPDATE downloads SET timeline = NULL WHERE timeline IS NOT NULL AND "
            "id <= (SELECT max(id) FROM downloads) - ?",
            (MAX_TIMELINES_KEPT,),
        )
        db.execute(
            "DELETE FROM files WHERE file NOT IN "
            "(SELECT file FROM files ORDER BY last DESC LIMIT ?)",
            (MAX_FILES_KEPT,),
        )

    def totals(self) -> dict[str, int]:
        row = self._db.execute("SELECT completed, failed, bytes FROM totals").fetchone()
        return dict(zip(("completed", "failed", "bytes"), row, strict=True))

    def files(self) -> dict[str, dict[str, int]]:
        """Per file name (the most recent L{MAX_FILES_KEPT}): its counts."""
        rows = self._db.execute(
            "SELECT file, completed, failed, bytes FROM files ORDER BY file"
        )
        return {
            file: {"completed": done, "failed": failed, "bytes": size}
            for file, done, failed, size in rows
        }

    def downloads(
        self, last: int = MAX_DOWNLOADS_KEPT, timelines: bool = False
    ) -> list[dict[str, Any]]:
        """The last C{last} download records, oldest first."""
        rows = self._db.execute(
            "SELECT record, timeline FROM downloads ORDER BY id DESC LIMIT ?", (last,)
        ).fetchall()
        records = []
        self.unreadable = 0
        for details, timeline in reversed(rows):
            record = _readable_record(details)
            if record is None:
                self.unreadable += 1
                continue
            if timelines and timeline is not None:
                with contextlib.suppress(ValueError, TypeError):
                    record["timeline"] = json.loads(timeline)
            records.append(record)
        return records

    def document(self, timelines: bool = False) -> dict[str, Any]:
        """Everything, as the JSON document ``redesdl stats --json`` prints."""
        with self._read():
            created = self._db.execute(
                "SELECT value FROM meta WHERE key = 'created'"
            ).fetchone()[0]
            return {
                "schema": SCHEMA_VERSION,
                "role": "redesdl",
                "created": created,
                "totals": self.totals(),
                "files": self.files(),
                "downloads": self.downloads(timelines=timelines),
            }

    @contextmanager
    def _read(self) -> Iterator[None]:
        """One consistent snapshot for several queries."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


#: The fields a download record must have, and their types, to be shown.
_RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "file": str,
    "result": str,
    "path": str,
    "reason": str,
    "size": int,
    "bytes_fetched": int,
    "seconds": (int, float),
}


def _readable_record(details: Any) -> dict[str, Any] | None:
    """A stored record, or None if it is not one (damaged, or written by
    something else): C{stats} leaves it out rather than failing for good."""
    try:
        record = json.loads(details)
    except (ValueError, TypeError):
        return None
    if not isinstance(record, dict) or "file" not in record or "result" not in record:
        return None
    for key, kind in _RECORD_FIELDS.items():
        value = record.get(key)
        if value is not None and (
            not isinstance(value, kind) or isinstance(value, bool)
        ):
            return None
    return record
