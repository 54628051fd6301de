"""Statistics that survive crashes: JSON, loaded at start, saved atomically.

Each actor keeps one JSON document. It is loaded when the actor starts and
checked field by field against the actor's L{StatsShape} (a file that cannot
be parsed or holds a wrong type anywhere is set aside as ``.corrupt`` with one
warning and the actor starts fresh; a field it lacks gets its fresh value),
changed in memory as things happen, and written with a temporary file, fsync
and rename every L{SAVE_INTERVAL} seconds while something changed and when
the actor stops. A SIGKILL loses at most the last interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from redesdl.jsonfile import (
    Check,
    anything,
    counter,
    flag,
    mapping,
    number,
    optional,
    read_json,
    record,
    sequence,
    text,
    write_json_atomic,
)

SCHEMA_VERSION = 1
SAVE_INTERVAL = 10.0

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


class StatsFile(Service):
    """One actor's statistics document and its periodic, atomic saving."""

    log = Logger()

    def __init__(
        self,
        path: FilePath,
        role: str,
        fresh: Callable[[], dict[str, Any]],
        clock: Any,
        interval: float = SAVE_INTERVAL,
    ) -> None:
        self.path = path
        self._clock = clock
        self._interval = interval
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

    def stopService(self) -> None:
        super().stopService()
        if self._saver.running:
            self._saver.stop()
        self.save()

    def saveIfChanged(self) -> None:
        if self._dirty:
            self.save()

    def save(self) -> None:
        self.data["uptime_seconds"] = round(
            self._uptimeBefore + self._clock.seconds() - self._startedAt, 3
        )
        self.data["saved"] = time.time()
        try:
            write_json_atomic(self.path, self.data)
        except OSError as e:
            self.log.error(
                "cannot save statistics to {path}: {error}",
                path=self.path.path,
                error=e,
            )
            return
        self._dirty = False
