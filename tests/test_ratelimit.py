"""--rate-limit: the chunk server paces its writes with a token bucket (fake clock)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from redesdl.secondary.chunkserver import RangeWriter
from redesdl.secondary.ratelimit import TokenBucket, parse_rate


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("1024", 1024),
        ("512K", 512 * 1024),
        ("2M", 2 * 1024**2),
        ("1.5g", 3 * 2**29),
        ("32MiB/s", 32 * 1024**2),
    ],
)
def test_rates_use_powers_of_1024(text: str, rate: int) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "-1M", "0", "3T"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


class DrainingConsumer:
    """A transport whose buffer empties at once: asks for a block after each write.

    It drives a L{RangeWriter} the way the chunk session does: one block
    each time the transport has sent what it held.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.data = bytearray()
        self.writer: RangeWriter | None = None

    def start(self, writer: RangeWriter) -> None:
        self.writer = writer
        self._clock.callLater(0, self._drained)

    def _drained(self) -> None:
        assert self.writer is not None
        if not self.writer.done:
            self.writer.write_block()

    def write(self, data: bytes) -> None:
        self.data += data
        self._clock.callLater(0, self._drained)


def writer(
    path: Path, consumer: DrainingConsumer, bucket: TokenBucket, clock: Clock
) -> RangeWriter:
    size = path.stat().st_size
    return RangeWriter(os.open(path, os.O_RDONLY), 0, size, consumer, bucket, clock)


def test_a_range_is_sent_no_faster_than_the_rate(tmp_path: Path) -> None:
    rate, size = 64 * 1024, 256 * 1024
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    clock = Clock()
    bucket = TokenBucket(rate, clock)
    consumer = DrainingConsumer(clock)
    sending = writer(path, consumer, bucket, clock)
    consumer.start(sending)
    for step in range(1, 121):
        clock.advance(0.05)
        allowed = rate / 10 + rate * step * 0.05 + bucket.blockSize
        assert len(consumer.data) <= allowed
        assert sending.held <= bucket.blockSize
    assert sending.done
    assert bytes(consumer.data) == path.read_bytes()
    sending.close()


def test_two_ranges_share_one_budget(tmp_path: Path) -> None:
    rate, size = 64 * 1024, 128 * 1024
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    clock = Clock()
    bucket = TokenBucket(rate, clock)
    consumers = [DrainingConsumer(clock), DrainingConsumer(clock)]
    writers = [writer(path, consumer, bucket, clock) for consumer in consumers]
    for consumer, sending in zip(consumers, writers, strict=True):
        consumer.start(sending)
    clock.advance(0)
    for _ in range(40):
        clock.advance(0.05)
    sent = sum(len(c.data) for c in consumers)
    assert sent <= rate / 10 + rate * 2.0 + 2 * bucket.blockSize
    assert sent >= rate * 1.5
    for sending in writers:
        sending.close()
