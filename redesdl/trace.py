"""Protocol tracing: one line per message sent or received, when switched on.

The original system's consoles showed every message they exchanged; ``trace
on`` (or ``--trace``) does the same here. Bulk bytes are summarized, and long
lists (a manifest's chunk hashes) are shown by their length.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

_log = Logger(namespace="redesdl.trace")


def summarize(message: dict[str, Any]) -> str:
    """A message as one short line: long lists and strings abbreviated."""

    def shorten(value: Any) -> Any:
        if isinstance(value, list):
            if len(value) > 4:
                return f"[{len(value)} items]"
            return [shorten(item) for item in value]
        if isinstance(value, dict):
            return {key: shorten(item) for key, item in value.items()}
        if isinstance(value, str) and len(value) > 24 and value.isalnum():
            return value[:12] + "…"
        return value

    text = json.dumps(shorten(message), ensure_ascii=False, separators=(",", ":"))
    if message.get("type") == "chunk":
        text += f" + {message.get('length')} bytes of data"
    return text


class Tracer:
    """Where trace lines go (the console if one is attached, else the log)."""

    def __init__(self) -> None:
        self.enabled = False
        self.sink: Callable[[str], None] | None = None

    def emit(self, arrow: str, peer: str, message: dict[str, Any]) -> None:
        line = f"{arrow} {peer} {summarize(message)}"
        if self.sink is not None:
            self.sink(line)
        else:
            _log.info("{line}", line=line)


TRACER = Tracer()
