"""Statistics that survive crashes: JSON, loaded at start, saved atomically.

Each actor keeps one JSON document. It is loaded when the actor starts (an
unreadable file is set aside with a warning and the actor starts fresh),
changed in memory as things happen, and written with a temporary file, fsync
and rename every L{SAVE_INTERVAL} seconds while something changed and when
the actor stops. A SIGKILL loses at most the last interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from redesdl.jsonfile import read_json, write_json_atomic

SCHEMA_VERSION = 1
SAVE_INTERVAL = 10.0


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
        self.data["starts"] = int(self.data.get("starts", 0)) + 1
        self.changed()

    def _load(self, role: str, fresh: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        stored = read_json(self.path, None)
        if stored is None:
            return {
                "schema": SCHEMA_VERSION,
                "role": role,
                "created": time.time(),
                **fresh(),
            }
        if not isinstance(stored, dict) or stored.get("schema") != SCHEMA_VERSION:
            aside = self.path.sibling(self.path.basename() + ".old")
            self.log.warn(
                "{path} has another schema; moved to {aside}, starting fresh",
                path=self.path.path,
                aside=aside.path,
            )
            self.path.moveTo(aside)
            return self._load(role, fresh)
        template = fresh()
        for key, value in template.items():
            if not isinstance(stored.get(key), type(value)):
                stored[key] = value
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
