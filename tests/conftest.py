"""Fixtures shared by the suite: failing on logged errors, temporary folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from .terminal import PtySession


@pytest.fixture(autouse=True)
def no_logged_errors(request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    """Fail a test during which anything logged a critical error or traceback.

    Unhandled errors in Deferreds and failures of our own handlers are logged
    at critical level or with a failure attached; either means a bug. Tests
    that provoke such a log on purpose mark themselves ``allow_logged_errors``.
    """
    errors: list[Any] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") == LogLevel.critical or (
            "log_failure" in event and event.get("log_level") != LogLevel.info
        ):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    yield errors
    globalLogPublisher.removeObserver(observe)
    if request.node.get_closest_marker("allow_logged_errors") is None:
        assert not errors, [e.get("log_failure") or e.get("log_format") for e in errors]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_logged_errors: the test provokes logged errors on purpose"
    )


@pytest.fixture(autouse=True, scope="session")
def private_client_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep client tokens and statistics of every test out of the user's home."""
    saved = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("client-state"))
    yield
    if saved is None:
        del os.environ["XDG_STATE_HOME"]
    else:
        os.environ["XDG_STATE_HOME"] = saved


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """The warning lines logged during the test, as an operator reads them."""
    lines: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") == LogLevel.warn:
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


@pytest.fixture
def sessions() -> Iterator[list[PtySession]]:
    """Terminals a test opens, closed after it whatever happened."""
    opened: list[PtySession] = []
    yield opened
    for session in opened:
        session.close()
