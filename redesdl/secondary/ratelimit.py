"""``--rate-limit``: one byte budget per second shared by all of a secondary's clients.

A token bucket: each block to send takes its size in tokens, which refill at
the configured rate. A block that would overdraw the bucket is sent later,
by a timer, instead of now; until then the range writer writes nothing, so the
transport stays idle and the client's socket fills no further. No sleeping,
no buffering of more than one block per connection.
"""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?(?:/s)?", re.IGNORECASE)


def parse_rate(text: str) -> int:
    """Bytes per second from C{text} such as ``2M``, ``512K`` or ``1048576``."""
    match = _RATE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a rate such as 512K, 2M or 1G")
    rate = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if rate <= 0:
        raise ValueError("a rate must be positive")
    return rate


class TokenBucket:
    """Hand out at most C{rate} bytes per second, with a burst of 1/10 s."""

    def __init__(self, rate: int, clock: Any) -> None:
        self.rate = rate
        self._clock = clock
        self._capacity = max(rate / 10, 1.0)
        self._tokens = self._capacity
        self._refilled = clock.seconds()

    @property
    def blockSize(self) -> int:
        """Send in blocks of about 1/20 s of the rate, for a smooth flow."""
        return max(4096, self.rate // 20)

    def take(self, size: int) -> float:
        """Spend C{size} bytes; return how many seconds to wait before sending."""
        now = self._clock.seconds()
        self._tokens = min(
            self._capacity, self._tokens + (now - self._refilled) * self.rate
        )
        self._refilled = now
        self._tokens -= size
        return max(0.0, -self._tokens / self.rate)
