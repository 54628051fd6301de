"""A program on a pseudo-terminal, typed at and read from as a person would."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Sequence


class PtySession:
    """Run C{argv} with a pty as its stdin, stdout and stderr."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self._master, slave = os.openpty()
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)
        self.output = b""

    def type(self, text: str | bytes) -> None:
        os.write(self._master, text.encode() if isinstance(text, str) else text)

    def read_until(self, expected: str, timeout: float = 30.0) -> str:
        """Read until C{expected} appears in everything read so far."""
        deadline = time.monotonic() + timeout
        while expected.encode() not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out waiting for {expected!r}; the "
                    f"screen shows:\n{self.text()[-2000:]}"
                )
            ready, _, _ = select.select([self._master], [], [], min(left, 0.2))
            if ready:
                try:
                    self.output += os.read(self._master, 65536)
                except OSError:
                    if self.process.poll() is not None:
                        raise AssertionError(
                            f"the program exited before {expected!r}:\n"
                            f"{self.text()[-2000:]}"
                        ) from None
        return self.text()

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the program to exit, reading what it still prints."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self._master], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self._master, 65536)
                except OSError:
                    pass
        return self.process.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._master)
