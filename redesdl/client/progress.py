"""A one-line progress display for ``redesdl get`` on a terminal.

Redrawn at most ten times a second on stderr (so stdout stays clean for
``--json``), only when stderr is a terminal and ``--quiet`` was not given.
The line fits the terminal's current width (read on every redraw, so a
resized window is followed): a long name is shortened in the middle, and on
a very narrow terminal the least useful fields go first. Anything else
printed while it shows (log lines, warnings) goes through
L{ProgressLine.above}, which clears the line first and redraws it after.
"""

from __future__ import annotations

import os
from typing import Any, TextIO

from twisted.internet.task import LoopingCall

from redesdl.client.job import GetJob

#: Width assumed when the stream's terminal cannot say.
DEFAULT_WIDTH = 80
#: Fewest characters of a name kept when it is shortened.
MIN_NAME = 12
#: Erases from the cursor to the end of the line.
CLEAR_LINE = "\r\x1b[K"


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def shorten(text: str, width: int) -> str:
    """C{text} in at most C{width} characters, cut in the middle with C{…}."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def fit(name: str, fields: list[str], width: int) -> str:
    """C{name} then as many C{fields} as fit in C{width}, most important first.

    The name is shortened (down to L{MIN_NAME}) before any field is dropped;
    the first field is never dropped.
    """
    kept = list(fields)
    while True:
        rest = "  ".join(kept)
        room = width - len(rest) - 2
        if room >= min(len(name), MIN_NAME) or len(kept) <= 1:
            return f"{shorten(name, max(room, 1))}: {rest}"[:width]
        kept.pop()


def progress_fields(job: GetJob, now: float) -> list[str] | None:
    """The progress fields, most important first; None while not downloading.

    Chunks kept from an earlier attempt count as done, so a resumed download
    reaches 100%; the rate and ETA count only this run's bytes and time.
    """
    download = job.download
    if download is None or job.downloadStarted is None or job.state != "downloading":
        return None
    fetched, reused = download.bytesDone, download.bytesReused
    done, size = fetched + reused, download.info.size
    started = getattr(download, "fetchStarted", None) or job.downloadStarted
    elapsed = now - started
    rate = fetched / elapsed if elapsed > 0 else 0.0
    eta = f"ETA {(size - done) / rate:.0f} s" if rate > 0 else "ETA ?"
    percent = 100 * done / size if size else 100
    sources = len(download.liveSources)
    return [
        f"{percent:3.0f}%",
        eta,
        f"{human_size(rate)}/s",
        f"{human_size(done)} of {human_size(size)}",
        f"{sources} source{'' if sources == 1 else 's'}",
    ]


def describe_progress(job: GetJob, now: float, width: int = 1000) -> str:
    """One line of at most C{width} characters: the progress, or the job's state."""
    fields = progress_fields(job, now)
    if fields is None:
        return fit(job.name, [job.state], width)
    return fit(job.name, fields, width)


def terminal_width(stream: TextIO) -> int:
    """The width of the terminal C{stream} writes to, now."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
    except (OSError, ValueError, AttributeError):
        return DEFAULT_WIDTH


class ProgressLine:
    """Redraw one status line for C{job} on C{stream} while it runs."""

    def __init__(self, job: GetJob, stream: TextIO, clock: Any) -> None:
        self._job = job
        self._stream = stream
        self._clock = clock
        self._loop = LoopingCall(self._draw)
        self._loop.clock = clock
        self._shown = False

    def start(self) -> None:
        self._loop.start(0.1, now=True)

    def _draw(self) -> None:
        # One column short of the width: writing the last column makes some
        # terminals wrap, and every redraw would then scroll.
        width = max(terminal_width(self._stream) - 1, 1)
        line = describe_progress(self._job, self._clock.seconds(), width)
        self._stream.write(CLEAR_LINE + line)
        self._stream.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self._stream.write(CLEAR_LINE)
            self._stream.flush()
            self._shown = False

    def above(self, text: str) -> None:
        """Print C{text} (a whole line) where the progress line was, then redraw."""
        self._clear()
        self._stream.write(text if text.endswith("\n") else text + "\n")
        self._stream.flush()
        if self._loop.running:
            self._draw()

    def stop(self) -> None:
        """Stop redrawing and leave the line empty for what comes next."""
        if self._loop.running:
            self._loop.stop()
        self._clear()
