"""JSON-lines logs, for log shippers: ``twistd --logger redesdl.jsonlog.observer``.

twistd's ``--logger`` takes the name of a function that returns the log
observer; this one writes every event as one JSON object per line, with
Twisted's fields (``log_time``, ``log_level``, ``log_namespace``,
``log_format``) and the event's own (``name``, ``file``, ``client``...), plus
``text``: the line the text log would show. It writes to the file named by
``$REDESDL_JSON_LOG``, or to standard output (the journal, under systemd).
Peer strings in the event's fields are escaped first (L{escaped_event}), so
a line holds no terminal escapes and no lone surrogates strict JSON refuses.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from twisted.logger import (
    ILogObserver,
    eventAsJSON,
    formatEvent,
)
from zope.interface import implementer

from redesdl.printable import escaped_event


@implementer(ILogObserver)
class JSONLinesObserver:
    """Write each event as one line of JSON to a text stream."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self._stream = stream

    def __call__(self, event: dict[str, Any]) -> None:
        safe = escaped_event(event)
        line = eventAsJSON({**safe, "text": formatEvent(safe)})
        self._stream.write(line + "\n")
        self._stream.flush()


def observer() -> JSONLinesObserver:
    path = os.environ.get("REDESDL_JSON_LOG")
    if path:
        return JSONLinesObserver(open(path, "a", encoding="utf-8"))
    return JSONLinesObserver(sys.stdout)
