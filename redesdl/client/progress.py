"""A one-line progress display for ``redesdl get`` on a terminal.

Redrawn at most ten times a second on stderr (so stdout stays clean for
``--json``), only when stderr is a terminal and ``--quiet`` was not given.
"""

from __future__ import annotations

from typing import Any, TextIO

from twisted.internet.task import LoopingCall

from redesdl.client.job import GetJob


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def describe_progress(job: GetJob, now: float) -> str:
    """One line: bytes done, rate, ETA and sources, or the job's state."""
    download = job.download
    if download is None or job.downloadStarted is None or job.state != "downloading":
        return f"{job.name}: {job.state}"
    elapsed = now - job.downloadStarted
    done, size = download.bytesDone, download.info.size
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{(size - done) / rate:.0f} s" if rate > 0 else "?"
    percent = 100 * done / size if size else 100
    return (
        f"{job.name}: {percent:3.0f}% {human_size(done)} of {human_size(size)}, "
        f"{human_size(rate)}/s, ETA {eta}, {len(download.liveSources)} sources"
    )


class ProgressLine:
    """Redraw one status line for C{job} on C{stream} while it runs."""

    def __init__(self, job: GetJob, stream: TextIO, clock: Any) -> None:
        self._job = job
        self._stream = stream
        self._clock = clock
        self._loop = LoopingCall(self._draw)
        self._loop.clock = clock
        self._width = 0

    def start(self) -> None:
        self._loop.start(0.1, now=True)

    def _draw(self) -> None:
        line = describe_progress(self._job, self._clock.seconds())
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        self._stream.write("\r" + " " * self._width + "\r")
        self._stream.flush()
