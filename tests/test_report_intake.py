"""Secondaries' reports applied a slice at a time, in order, with backpressure."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import Cooperator

from redesdl.central.intake import ENTRIES_PER_STEP, ReportIntake
from redesdl.central.registry import SecondaryRecord
from redesdl.protocol.wire import CatalogDone, FilesAdded, Message

from .test_registry_index import info, record


class _Connection:
    def __init__(self) -> None:
        self.reading = True
        self.pauses = 0

    def sendMessage(self, message: Message) -> None:
        pass

    def pause_reading(self) -> None:
        assert self.reading
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        assert not self.reading
        self.reading = True


def _secondary(name: str) -> SecondaryRecord:
    secondary = record(name)
    secondary.connection = _Connection()
    return secondary


def test_a_big_report_is_applied_in_steps_while_its_sender_is_not_read() -> None:
    turns: list[Callable[[], None]] = []  # what the reactor would run next
    steps = Cooperator(
        terminationPredicateFactory=lambda: lambda: True, scheduler=turns.append
    )
    applied: list[tuple[str, str, int]] = []

    def apply(secondary: SecondaryRecord, message: Message) -> None:
        size = len(message.files) if isinstance(message, FilesAdded) else 0
        applied.append((secondary.name, message.TYPE, size))

    intake = ReportIntake(apply, steps.cooperate)
    first, second = _secondary("s1"), _secondary("s2")
    batch = tuple(info(f"f{i:04d}") for i in range(256))
    intake.submit(first, FilesAdded(batch))
    intake.submit(second, FilesAdded(batch[:10]))
    intake.submit(first, CatalogDone())
    assert not first.connection.reading and not second.connection.reading
    assert applied == []
    while turns:
        turns.pop(0)()
        assert len(applied) <= intake.steps
    assert applied == [
        *[("s1", "files_added", ENTRIES_PER_STEP)] * (256 // ENTRIES_PER_STEP),
        ("s2", "files_added", 10),
        ("s1", "catalog_done", 0),
    ]
    assert first.connection.reading and second.connection.reading
    assert first.connection.pauses == second.connection.pauses == 1


def test_without_a_cooperator_reports_apply_at_once_and_nobody_pauses() -> None:
    applied: list[str] = []
    intake = ReportIntake(lambda secondary, message: applied.append(message.TYPE))
    first = _secondary("s1")
    intake.submit(first, FilesAdded((info("a"),)))
    intake.submit(first, CatalogDone())
    assert applied == ["files_added", "catalog_done"]
    assert first.connection.reading and first.connection.pauses == 0
