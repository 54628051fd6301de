"""Secondaries' reports applied to the registry a slice at a time, in order.

A secondary joining with 100,000 files sends them as ``files_added`` batches
of 256 as fast as TCP carries them; a hundred joining at once would hold the
reactor for seconds if each batch were applied in the turn that read it, and
the heartbeats of everyone else would wait. So a registered secondary's
reports (everything it says but ``ping``, answered at once: liveness never
waits) are applied by one cooperative task, L{ENTRIES_PER_STEP} entries a
step, in the order they arrived; the Cooperator gives the reactor back every
few milliseconds. A secondary whose reports wait is not read until they are
applied (TCP backpressure), so what waits is at most one read per secondary,
and while it waits its silence is not held against it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from redesdl.central.registry import SecondaryRecord, run_at_once
from redesdl.protocol.wire import FilesAdded, FilesRemoved, Message

#: Files added or removed applied between two yields to the reactor.
ENTRIES_PER_STEP = 64


def in_steps(message: Message) -> Iterator[Message]:
    """C{message} as parts of at most L{ENTRIES_PER_STEP} entries each."""
    if isinstance(message, FilesAdded) and len(message.files) > ENTRIES_PER_STEP:
        files = message.files
        for at in range(0, len(files), ENTRIES_PER_STEP):
            yield FilesAdded(files[at : at + ENTRIES_PER_STEP])
    elif isinstance(message, FilesRemoved) and len(message.names) > ENTRIES_PER_STEP:
        names = message.names
        for at in range(0, len(names), ENTRIES_PER_STEP):
            yield FilesRemoved(names[at : at + ENTRIES_PER_STEP])
    else:
        yield message


class ReportIntake:
    """Apply what secondaries report in arrival order, a step at a time.

    C{apply} folds one report into the shared state. C{cooperate} runs the
    draining task (L{twisted.internet.task.cooperate} in the daemon; by
    default everything is applied at once, as unit tests want). A record's
    C{connection} is asked to C{pause_reading} while its reports wait and to
    C{resume_reading} once they are applied.
    """

    def __init__(
        self,
        apply: Callable[[SecondaryRecord, Message], None],
        cooperate: Callable[[Iterator[None]], Any] = run_at_once,
    ) -> None:
        self._apply = apply
        self._cooperate = cooperate
        self._queue: deque[tuple[SecondaryRecord, Message]] = deque()
        #: Reports waiting, by connection, and the connections not read meanwhile.
        self._waiting: dict[Any, int] = {}
        self._paused: set[Any] = set()
        self._draining = False
        #: Steps applied so far, so tests can count the slices.
        self.steps = 0

    def submit(self, record: SecondaryRecord, message: Message) -> None:
        """Apply C{message} from C{record} after everything reported before it."""
        connection = record.connection
        self._queue.append((record, message))
        self._waiting[connection] = self._waiting.get(connection, 0) + 1
        if not self._draining:
            self._draining = True
            self._cooperate(self._drain())
        if connection in self._waiting and connection not in self._paused:
            self._paused.add(connection)
            connection.pause_reading()

    def _drain(self) -> Iterator[None]:
        try:
            while self._queue:
                record, message = self._queue.popleft()
                for part in in_steps(message):
                    self._apply(record, part)
                    self.steps += 1
                    yield None
                self._applied(record.connection)
        finally:
            self._draining = False

    def _applied(self, connection: Any) -> None:
        left = self._waiting[connection] - 1
        if left:
            self._waiting[connection] = left
            return
        del self._waiting[connection]
        if connection in self._paused:
            self._paused.remove(connection)
            connection.resume_reading()
