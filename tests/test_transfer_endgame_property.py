"""The endgame under any mix of sources, on a fake clock: never a stall.

Hypothesis draws a few sources, each quick or slow, some stalling after a
few chunks (they would answer only at a timeout far beyond the test), some
dying, some lying. A central keeps listing them all, as it does while they
are registered (a get), or none does (a secondary's replication). Whatever
the mix, while one honest source never stalls, the download ends whole,
without waiting for a stalled source's timeout, and leaves no timer behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from redesdl.manifest import MIN_CHUNK_SIZE, build_manifest
from redesdl.transfer.download import Download
from redesdl.transfer.result import DownloadResult

from .fakesources import FakeCluster

CHUNKS = 8
DATA = os.urandom(CHUNKS * MIN_CHUNK_SIZE)

#: A stalled source's requests end only at this timeout, never reached here.
STALL = 10_000.0

BEHAVIOURS = st.fixed_dictionaries(
    {"delay": st.sampled_from([0.5, 1.0, 1.5, 4.0, 20.0])},
    optional={
        "hangs_after": st.integers(0, 4),
        "dies_after": st.integers(1, 6),
        "corrupt": st.just(True),
    },
)


@settings(max_examples=80, deadline=None)
@given(
    honest=st.sampled_from([0.5, 1.0, 4.0]),
    others=st.lists(BEHAVIOURS, min_size=1, max_size=3),
    listed=st.booleans(),
)
def test_one_honest_source_always_finishes_without_waiting_for_a_stall(
    honest: float, others: list[dict[str, Any]], listed: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        original = work / "original.bin"
        original.write_bytes(DATA)
        clock = Clock()
        cluster = FakeCluster(clock, build_manifest(str(original), "f.bin"), DATA)
        sources = [cluster.add("honest", delay=honest)]
        for number, behaviour in enumerate(others):
            if "hangs_after" in behaviour:
                behaviour = {**behaviour, "hangs_for": STALL}
            sources.append(cluster.add(f"s{number}", **behaviour))
        target = work / "f.bin"
        download = Download(
            cluster.manifest.info,
            sources,
            str(target),
            reactor=clock,
            openSource=cluster.open_source,
            progressTimeout=STALL,
            # As a get does: a source dropped meanwhile is tried again while
            # the central lists it. Without (replication), a source outpaced
            # by a copy of its chunk is taken back when no other is left.
            findSources=(lambda: succeed(sources)) if listed else None,
            retryFor=30.0,
        )
        outcome: list[Any] = []
        download.start().addBoth(outcome.append)
        while not outcome and clock.seconds() < STALL:
            clock.advance(0.25)
        assert outcome, "the download waited for a stalled source's timeout"
        assert isinstance(outcome[0], DownloadResult), outcome[0]
        assert (
            hashlib.sha256(target.read_bytes()).digest()
            == hashlib.sha256(DATA).digest()
        )
        # Within the time the honest source alone would need, plus a stalled
        # chunk's wait to become overdue on the slowest pace seen, plus the
        # central's refresh interval, for a source dropped and taken back.
        assert outcome[0].seconds <= CHUNKS * honest + 4 * 20.0 + 3.0
        assert clock.getDelayedCalls() == []
