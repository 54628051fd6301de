"""Each daemon can open every connection it accepts: RLIMIT_NOFILE and the cap."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from redesdl.central.tap import Options as CentralOptions
from redesdl.daemon import DESCRIPTOR_RESERVE, descriptor_budget, fit_descriptors

UNITS = Path(__file__).parent.parent / "contrib" / "systemd"
INFINITY = resource.RLIM_INFINITY


@pytest.mark.parametrize(
    ("soft", "hard", "requested", "per_connection", "expected"),
    [
        (1024, 524288, 1024, 1, (524288, 1024)),
        (1024, 1024, 1024, 1, (1024, 1024 - DESCRIPTOR_RESERVE)),
        (1024, 4096, 5000, 2, (4096, (4096 - DESCRIPTOR_RESERVE) // 2)),
        (256, 256, 10, 1, (256, 10)),
        (32, 32, 100, 1, (32, 1)),
        (1024, INFINITY, 2000, 1, (1 << 20, 2000)),
        (INFINITY, INFINITY, 2000, 1, (INFINITY, 2000)),
    ],
)
def test_budget(
    soft: int, hard: int, requested: int, per_connection: int, expected: tuple
) -> None:
    assert descriptor_budget(soft, hard, requested, per_connection) == expected


class FakeLimits:
    """The part of the resource module the daemons use, on numbers."""

    RLIMIT_NOFILE = resource.RLIMIT_NOFILE

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.limits = (soft, hard)
        self.refuse = refuse

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


def logged(action: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []

    def observe(event: dict) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        return action(), lines
    finally:
        globalLogPublisher.removeObserver(observe)


def test_the_soft_limit_is_raised_and_logged() -> None:
    limits = FakeLimits(1024, 65536)
    allowed, lines = logged(lambda: fit_descriptors(1024, 1, "central", limits))
    assert limits.limits == (65536, 65536) and allowed == 1024
    assert lines == ["central: open files limit 65536 (was 1024, hard limit 65536)"]


def test_too_many_connections_are_lowered_with_one_line() -> None:
    limits = FakeLimits(1024, 1024)
    allowed, lines = logged(lambda: fit_descriptors(5000, 2, "secondary", limits))
    assert allowed == (1024 - DESCRIPTOR_RESERVE) // 2
    assert lines[-1] == (
        f"secondary: --max-connections 5000 lowered to {allowed}: 1024 open files, "
        f"{DESCRIPTOR_RESERVE} kept for files and sockets"
    )


def test_a_refused_raise_keeps_the_old_limit() -> None:
    limits = FakeLimits(512, 4096, refuse=True)
    allowed, lines = logged(lambda: fit_descriptors(1024, 1, "central", limits))
    assert allowed == 512 - DESCRIPTOR_RESERVE
    assert "cannot raise the open files limit from 512 to 4096" in lines[0]


def test_the_daemon_options_hold_the_cap_under_the_limit() -> None:
    options = CentralOptions()
    options.parseOptions(["--max-connections", str(10**9)])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == INFINITY
    assert options.limits.total < 10**9
    assert options.limits.total <= soft - DESCRIPTOR_RESERVE


def test_the_systemd_units_set_limit_nofile() -> None:
    units = sorted(UNITS.glob("*.service"))
    assert units
    for unit in units:
        assert any(
            line.startswith("LimitNOFILE=") for line in unit.read_text().splitlines()
        ), unit.name
