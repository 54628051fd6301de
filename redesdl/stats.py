"""Statistics that survive crashes: JSON, loaded at start, saved atomically.

Each actor keeps one JSON document. It is loaded when the actor starts and
checked field by field against the actor's L{StatsShape} (a file that cannot
be parsed or holds a wrong type anywhere is set aside as ``.corrupt`` with one
warning and the actor starts fresh; a field it lacks gets its fresh value),
changed in memory as things happen, and written with a temporary file, fsync
and rename every L{SAVE_INTERVAL} seconds while something changed and when
the actor stops. A SIGKILL loses at most the last interval.

The central's document holds an entry per file and per secondary and file,
hundreds of thousands of them, so the periodic save never holds the reactor
long: the document is encoded a slice of entries per turn by a Cooperator
(L{encode_json_in_slices}), and written, fsynced and renamed in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import Cooperator, LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from redesdl.jsonfile import (
    Check,
    anything,
    counter,
    encode_json_in_slices,
    flag,
    mapping,
    number,
    optional,
    read_json,
    record,
    sequence,
    text,
    write_bytes_atomic,
    write_json_atomic,
)

SCHEMA_VERSION = 1
SAVE_INTERVAL = 10.0
#: The longest a periodic save encodes in one reactor turn, in seconds.
TURN_SECONDS = 0.004

#: Runs a blocking function off the reactor: C{(f, *args) -> Deferred}.
InThread = Callable[..., Deferred[Any]]

#: The fields every statistics document holds, whatever the actor.
COMMON_FIELDS: dict[str, Check] = {
    "role": text,
    "created": number,
    "starts": counter,
    "uptime_seconds": number,
    "saved": optional(number),
}


class StatsShape:
    """An actor's own statistics fields: how each starts, and its type.

    Called, it returns the fresh fields, so it stands wherever a function
    making them did; L{StatsFile} checks a loaded document against it.
    """

    def __init__(self, fields: Mapping[str, tuple[Callable[[], Any], Check]]) -> None:
        self.fields = dict(fields)

    def __call__(self) -> dict[str, Any]:
        return {key: fresh() for key, (fresh, _) in self.fields.items()}

    def checks(self) -> dict[str, Check]:
        return {key: check for key, (_, check) in self.fields.items()}


def _guessed_checks(template: dict[str, Any]) -> dict[str, Check]:
    """Checks for a plain C{fresh} function's fields, from their fresh values."""
    by_type: dict[type, Check] = {
        bool: flag,
        int: counter,
        float: number,
        str: text,
        list: sequence(anything),
        dict: mapping(anything),
    }
    return {key: by_type.get(type(value), anything) for key, value in template.items()}


def _turn_budget() -> Callable[[], bool]:
    """A Cooperator's predicate: true once this turn used L{TURN_SECONDS}."""
    deadline = time.monotonic() + TURN_SECONDS
    return lambda: time.monotonic() >= deadline


def cooperator_on(clock: Any) -> Cooperator:
    """A Cooperator running its turns from C{clock}, L{TURN_SECONDS} each."""
    return Cooperator(
        terminationPredicateFactory=_turn_budget,
        scheduler=lambda work: clock.callLater(0, work),
    )


def thread_runner(clock: Any) -> InThread:
    """The reactor's thread pool; a test's Clock, which has none, runs inline."""
    if not IReactorThreads.providedBy(clock):
        return maybeDeferred

    def in_thread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(clock, clock.getThreadPool(), f, *args)

    return in_thread


class StatsFile(Service):
    """One actor's statistics document and its periodic, atomic saving.

    A periodic save (L{saveIfChanged}) encodes on the reactor a slice at a
    time and writes in a thread (C{cooperator} and C{in_thread} replace those
    in tests); one runs at a time, and a change meanwhile is saved at the next
    interval. L{save} writes at once, as the actor stops.
    """

    log = Logger()

    def __init__(
        self,
        path: FilePath,
        role: str,
        fresh: Callable[[], dict[str, Any]],
        clock: Any,
        interval: float = SAVE_INTERVAL,
        cooperator: Cooperator | None = None,
        in_thread: InThread | None = None,
    ) -> None:
        self.path = path
        self._clock = clock
        self._interval = interval
        self._cooperator = cooperator or cooperator_on(clock)
        self._in_thread = in_thread or thread_runner(clock)
        self._saving: Deferred[None] | None = None
        self.data = self._load(role, fresh)
        self._dirty = False
        self._saver = LoopingCall(self.saveIfChanged)
        self._saver.clock = clock
        self._startedAt = clock.seconds()
        self._uptimeBefore = float(self.data.get("uptime_seconds", 0.0))
        self.data["starts"] = self.data.get("starts", 0) + 1
        self.changed()

    def _load(self, role: str, fresh: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        template = fresh()
        if isinstance(fresh, StatsShape):
            fields = fresh.checks()
        else:
            fields = _guessed_checks(template)
        shape = record({"schema": counter}, {**COMMON_FIELDS, **fields})

        def check(stored: Any) -> None:
            version = stored.get("schema") if isinstance(stored, dict) else None
            if type(version) is int and version != SCHEMA_VERSION:
                return  # another version: moved to .old below
            shape(stored, "")

        stored = read_json(self.path, None, check=check)
        if stored is None:
            return {
                "schema": SCHEMA_VERSION,
                "role": role,
                "created": time.time(),
                **fresh(),
            }
        if stored.get("schema") != SCHEMA_VERSION:
            aside = self.path.sibling(self.path.basename() + ".old")
            self.log.warn(
                "{path} has another schema; moved to {aside}, starting fresh",
                path=self.path.path,
                aside=aside.path,
            )
            self.path.moveTo(aside)
            return self._load(role, fresh)
        for key, value in template.items():
            stored.setdefault(key, value)
        return stored

    def changed(self) -> None:
        """Something changed: save it within the next interval."""
        self._dirty = True

    def startService(self) -> None:
        super().startService()
        self._saver.start(self._interval, now=False)

    def stopService(self) -> Deferred[None]:
        """Stop saving periodically, then save: after any save in flight."""
        super().stopService()
        if self._saver.running:
            self._saver.stop()
        return self.save()

    def saveIfChanged(self) -> None:
        """Start a periodic save if something changed and none is running."""
        if self._dirty and self._saving is None:
            self._save_in_background()

    def save(self) -> Deferred[None]:
        """Write the document now, on the reactor thread; after the save in flight.

        The Deferred fires once written (at once when no save was in flight).
        """
        if self._saving is None:
            self._save_now()
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._saving.addCallback(lambda _: done.callback(self._save_now()))
        return done

    def _stamp(self) -> None:
        self.data["uptime_seconds"] = round(
            self._uptimeBefore + self._clock.seconds() - self._startedAt, 3
        )
        self.data["saved"] = time.time()
        self._dirty = False

    def _save_now(self) -> None:
        self._stamp()
        try:
            write_json_atomic(self.path, self.data)
        except OSError as e:
            self._not_saved(e)

    def _save_in_background(self) -> Deferred[None]:
        self._stamp()
        parts: list[str] = []
        encoding = self._cooperator.cooperate(encode_json_in_slices(self.data, parts))
        self._saving = saving = encoding.whenDone()
        saving.addCallback(lambda _: self._in_thread(self._write, parts))
        saving.addErrback(self._failed)
        saving.addBoth(self._ended)
        return saving

    def _write(self, parts: list[str]) -> None:
        """In a thread: the encoded document's bytes, written atomically."""
        write_bytes_atomic(self.path, "".join(parts).encode())

    def _ended(self, _: object) -> None:
        self._saving = None

    def _failed(self, failure: Failure) -> None:
        if failure.check(OSError):
            self._not_saved(failure.value)
        else:
            self._dirty = True
            self.log.failure(
                "cannot save statistics to {path}", failure, path=self.path.path
            )

    def _not_saved(self, error: BaseException) -> None:
        self._dirty = True
        self.log.error(
            "cannot save statistics to {path}: {error}",
            path=self.path.path,
            error=error,
        )
