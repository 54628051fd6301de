"""The download loop on a fake clock: failover, endgame, bans and retries.

No sockets and no threads: in-memory sources answer on a L{Clock}, and their
bytes go through the real store into a real ``.part`` file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure

from redesdl.manifest import MIN_CHUNK_SIZE, Manifest, build_manifest
from redesdl.protocol.sources import SourceAddress
from redesdl.transfer.download import Download
from redesdl.transfer.errors import (
    DownloadError,
    IntegrityError,
    NoLiveSourceError,
)
from redesdl.transfer.plan import MAX_DUPLICATES
from redesdl.transfer.result import DownloadResult

from .fakesources import FakeCluster

CHUNKS = 8


@pytest.fixture
def cluster(tmp_path: Path) -> FakeCluster:
    data = os.urandom(CHUNKS * MIN_CHUNK_SIZE)
    original = tmp_path / "original.bin"
    original.write_bytes(data)
    manifest = build_manifest(str(original), "f.bin")
    return FakeCluster(Clock(), manifest, data)


def download(
    cluster: FakeCluster, target: Path, sources: list[SourceAddress], **options: Any
) -> Download:
    return Download(
        cluster.manifest.info,
        sources,
        str(target),
        reactor=cluster.clock,
        openSource=cluster.open_source,
        **options,
    )


def run(cluster: FakeCluster, started: Deferred[Any], limit: int = 10_000) -> Any:
    """Advance the clock until C{started} fires; its result (or Failure)."""
    outcome: list[Any] = []
    started.addBoth(outcome.append)
    for _ in range(limit):
        if outcome:
            break
        cluster.clock.advance(0.5)
    assert outcome, "the download never ended"
    assert cluster.clock.getDelayedCalls() == [], "a delayed call was left behind"
    return outcome[0]


def intact(cluster: FakeCluster, target: Path) -> bool:
    return (
        hashlib.sha256(target.read_bytes()).hexdigest()
        == hashlib.sha256(cluster.data).hexdigest()
    )


def test_every_source_contributes(cluster: FakeCluster, tmp_path: Path) -> None:
    sources = [cluster.add(name) for name in ("a", "b", "c")]
    target = tmp_path / "f.bin"
    result = run(cluster, download(cluster, target, sources).start())
    assert isinstance(result, DownloadResult)
    assert intact(cluster, target)
    assert sorted(result.sources) == ["a", "b", "c"]
    assert sum(result.sources.values()) == len(cluster.data)
    assert not (tmp_path / "f.bin.part").exists()


def test_a_dying_source_hands_its_chunks_to_the_others(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add("dies", dies_after=1), cluster.add("stays", delay=2)]
    target = tmp_path / "f.bin"
    fetch = download(cluster, target, sources)
    result = run(cluster, fetch.start())
    assert intact(cluster, target)
    assert result.sources["dies"] == MIN_CHUNK_SIZE
    assert fetch.sourceErrors["dies"].endswith("connection lost")
    assert fetch.retriedChunks >= 1
    for failure in [e for e in fetch.timeline if e["event"] == "failed"]:
        assert any(
            e["event"] == "verified"
            and e["chunk"] == failure["chunk"]
            and e["source"] == "stays"
            for e in fetch.timeline
        )


def test_idle_sources_duplicate_a_slow_sources_last_chunks(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add("slow", delay=100), cluster.add("fast", delay=1)]
    target = tmp_path / "f.bin"
    fetch = download(cluster, target, sources)
    result = run(cluster, fetch.start())
    assert intact(cluster, target)
    duplicates = [e for e in fetch.timeline if e["event"] == "duplicate"]
    assert duplicates and all(e["source"] == "fast" for e in duplicates)
    assert len(duplicates) <= 2 * MAX_DUPLICATES
    assert result.sources == {"fast": len(cluster.data)}
    # Each chunk verified exactly once, whoever fetched it.
    verified = [e["chunk"] for e in fetch.timeline if e["event"] == "verified"]
    assert sorted(verified) == list(range(CHUNKS))


def test_equally_quick_sources_fetch_no_chunk_twice(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add(name, delay=1) for name in ("a", "b", "c")]
    target = tmp_path / "f.bin"
    fetch = download(cluster, target, sources)
    result = run(cluster, fetch.start())
    assert intact(cluster, target)
    # The last round leaves lanes idle, but each owner is as quick as they
    # are: a copy would arrive later than the chunk it copies.
    assert [e for e in fetch.timeline if e["event"] == "duplicate"] == []
    assert sum(result.sources.values()) == len(cluster.data)


def test_a_source_that_stalls_mid_download_is_copied_before_its_timeout(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [
        cluster.add("stalls", delay=1, hangs_for=60, hangs_after=2),
        cluster.add("ok", delay=1),
    ]
    target = tmp_path / "f.bin"
    fetch = download(cluster, target, sources, progressTimeout=60)
    result = run(cluster, fetch.start())
    assert intact(cluster, target)
    # "stalls" served its first two chunks in 1 s each, then claimed two
    # more at t=1: overdue at t=3, when "ok" copied them, long before the
    # 60 s progress timeout.
    copies = [e for e in fetch.timeline if e["event"] == "duplicate"]
    assert copies and {e["source"] for e in copies} == {"ok"}
    assert min(e["t"] for e in copies) == pytest.approx(3.0, abs=0.5)
    assert result.seconds < 10
    assert result.sources["stalls"] == 2 * MIN_CHUNK_SIZE


def test_a_corrupt_source_is_banned_and_reported_once(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    reported: list[str] = []
    sources = [cluster.add("liar", corrupt=True), cluster.add("honest", delay=3)]
    target = tmp_path / "f.bin"
    fetch = download(cluster, target, sources, onBadSource=reported.append)
    result = run(cluster, fetch.start())
    assert intact(cluster, target)
    assert reported == ["liar"]
    assert "liar" not in result.sources
    failures = [e for e in fetch.timeline if e["source"] == "liar"]
    reasons = {e["reason"] for e in failures if e["event"] == "failed"}
    assert "chunk hash mismatch" in reasons
    assert reasons <= {"chunk hash mismatch", "connection lost"}
    # Banned: after its failures, it is never given a chunk again.
    last = max(i for i, e in enumerate(fetch.timeline) if e["source"] == "liar")
    assert all(e["source"] != "liar" for e in fetch.timeline[last + 1 :])


def test_a_banned_source_is_not_taken_back_when_the_central_lists_it(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    liar = cluster.add("liar", violate=True)
    honest = cluster.add("honest", delay=1)
    target = tmp_path / "f.bin"
    fetch = download(
        cluster,
        target,
        [liar, honest],
        findSources=lambda: succeed([liar, honest]),
        refreshInterval=1.0,
    )
    run(cluster, fetch.start())
    assert intact(cluster, target)
    assert cluster.opened.count("liar") == 1
    assert "no request of ours" in fetch.sourceErrors["liar"]


def test_a_hanging_source_times_out_and_its_chunks_go_elsewhere(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add("hung", hangs_for=10), cluster.add("ok", delay=5)]
    target = tmp_path / "f.bin"
    fetch = download(cluster, target, sources, progressTimeout=10)
    result = run(cluster, fetch.start())
    assert intact(cluster, target)
    assert result.sources == {"ok": len(cluster.data)}
    assert "no progress for 10 s" in fetch.sourceErrors["hung"]


def test_only_lying_sources_is_an_integrity_error_and_renames_nothing(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add("a", corrupt=True), cluster.add("b", violate=True)]
    target = tmp_path / "f.bin"
    outcome = run(cluster, download(cluster, target, sources).start())
    assert isinstance(outcome, Failure)
    outcome.trap(IntegrityError)
    assert not target.exists()
    # Each is named for what it did, not for the hang-up that followed.
    line = str(outcome.value)
    assert "a: " in line and "connection lost" not in line, line


def test_a_source_that_comes_back_finishes_the_download(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    gone = cluster.add("gone", refuses=True)
    back = cluster.add("back", delay=1)
    listed: list[list[SourceAddress]] = [[]]
    cluster.clock.callLater(20, lambda: listed.append([back]))
    target = tmp_path / "f.bin"
    fetch = download(
        cluster,
        target,
        [gone],
        findSources=lambda: succeed(listed[-1]),
        retryFor=60,
    )
    result = run(cluster, fetch.start())
    assert intact(cluster, target)
    assert result.sources == {"back": len(cluster.data)}


def test_the_error_line_names_five_failed_sources_and_counts_the_rest(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    """1024 dead sources once made one error line of 250 KB."""
    sources = [cluster.add(f"dead{n}", refuses=True) for n in range(8)]
    fetch = download(cluster, tmp_path / "f.bin", sources)
    outcome = run(cluster, fetch.start())
    outcome.trap(NoLiveSourceError)
    line = str(outcome.value)
    assert line.count("cannot connect") == 5
    assert "; and 3 more" in line
    nothing = download(cluster, tmp_path / "g.bin", [])
    outcome = run(cluster, nothing.start())
    outcome.trap(NoLiveSourceError)
    assert "(the central listed none)" in str(outcome.value)


def test_giving_up_after_retry_for_keeps_the_part(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add("dies", dies_after=2, delay=1)]
    target = tmp_path / "f.bin"
    fetch = download(
        cluster, target, sources, findSources=lambda: succeed([]), retryFor=5
    )
    outcome = run(cluster, fetch.start())
    assert isinstance(outcome, Failure)
    outcome.trap(NoLiveSourceError)
    assert "none came back within 5 s" in str(outcome.value)
    assert (tmp_path / "f.bin.part").exists()
    assert not target.exists()


def test_an_empty_file_must_hash_to_nothing(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    lie = Manifest("empty.bin", 0, "0" * 64, ())
    fetch = Download(lie.info, [], str(tmp_path / "empty.bin"), reactor=cluster.clock)
    outcome = run(cluster, fetch.start())
    assert isinstance(outcome, Failure)
    outcome.trap(IntegrityError)
    assert not (tmp_path / "empty.bin").exists()
    honest = Manifest("empty.bin", 0, hashlib.sha256(b"").hexdigest(), ())
    fetch = Download(
        honest.info, [], str(tmp_path / "empty.bin"), reactor=cluster.clock
    )
    assert isinstance(run(cluster, fetch.start()), DownloadResult)
    assert (tmp_path / "empty.bin").read_bytes() == b""


@pytest.mark.parametrize("budget", [MIN_CHUNK_SIZE, MIN_CHUNK_SIZE * 3 // 2])
def test_endgame_copies_never_hold_more_than_the_budget(
    cluster: FakeCluster, tmp_path: Path, budget: int
) -> None:
    sources = [
        cluster.add("slow1", delay=100),
        cluster.add("slow2", delay=100),
        cluster.add("fast", delay=1),
    ]
    fetch = download(cluster, tmp_path / "f.bin", sources, copyBudget=budget)
    copies: list[Any] = []
    held: list[int] = []
    begin_copy = fetch.store.begin_copy

    def counted(index: int) -> Any:
        copy = begin_copy(index)
        copies.append(copy)
        held.append(sum(c.length for c in copies if not c.closed))
        return copy

    fetch.store.begin_copy = counted  # type: ignore[method-assign]
    run(cluster, fetch.start())
    assert intact(cluster, tmp_path / "f.bin")
    # Two chunks are slow: the plan offers two duplicates, only one fits.
    assert held and max(held) <= budget
    assert fetch.copyBytes == 0


def counting_copies(fetch: Download) -> tuple[list[int], list[Any]]:
    """Record what the endgame holds in memory at each new memory copy, and
    every scratch copy started."""
    memory: list[Any] = []
    held: list[int] = []
    scratch: list[Any] = []
    begin_copy, begin_scratch = fetch.store.begin_copy, fetch.store.begin_scratch

    def counted(index: int) -> Any:
        copy = begin_copy(index)
        memory.append(copy)
        held.append(sum(c.length for c in memory if not c.closed))
        return copy

    def on_disk(index: int) -> Any:
        copy = begin_scratch(index)
        scratch.append(copy)
        return copy

    fetch.store.begin_copy = counted  # type: ignore[method-assign]
    fetch.store.begin_scratch = on_disk  # type: ignore[method-assign]
    return held, scratch


def test_chunks_larger_than_the_budget_are_duplicated_on_disk(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add("slow", delay=100), cluster.add("fast", delay=1)]
    budget = MIN_CHUNK_SIZE - 1
    fetch = download(cluster, tmp_path / "f.bin", sources, copyBudget=budget)
    held, scratch = counting_copies(fetch)
    result = run(cluster, fetch.start())
    assert intact(cluster, tmp_path / "f.bin")
    duplicated = {e["chunk"] for e in fetch.timeline if e["event"] == "duplicate"}
    # The slow source's chunks were duplicated, each on disk, none in memory.
    assert duplicated and duplicated == {c.index for c in scratch}
    assert held == [] and fetch.copyBytes == 0
    # Each duplicate verified and was copied into the .part: the file is whole
    # though the slow source never delivered.
    assert result.sources == {"fast": len(cluster.data)}
    verified = [e for e in fetch.timeline if e["event"] == "verified"]
    assert sorted(e["chunk"] for e in verified) == list(range(CHUNKS))
    assert all(e["source"] == "fast" for e in verified if e["chunk"] in duplicated)
    assert not (tmp_path / "f.bin.part.dup").exists()


def test_duplicates_over_the_budget_go_to_disk_the_rest_to_memory(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [
        cluster.add("slow1", delay=100),
        cluster.add("slow2", delay=100),
        cluster.add("fast", delay=1),
    ]
    fetch = download(cluster, tmp_path / "f.bin", sources, copyBudget=MIN_CHUNK_SIZE)
    held, scratch = counting_copies(fetch)
    run(cluster, fetch.start())
    assert intact(cluster, tmp_path / "f.bin")
    assert held and max(held) <= MIN_CHUNK_SIZE
    assert scratch
    assert not (tmp_path / "f.bin.part.dup").exists()


def test_the_scratch_file_is_removed_when_the_download_is_interrupted(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add("slow", delay=100), cluster.add("fast", delay=1)]
    fetch = download(cluster, tmp_path / "f.bin", sources, copyBudget=0)
    _, scratch = counting_copies(fetch)
    seen: list[bool] = []

    def interrupt() -> None:
        seen.append((tmp_path / "f.bin.part.dup").exists())
        fetch.interrupt()

    begin_scratch = fetch.store.begin_scratch

    def then_interrupt(index: int) -> Any:
        if not scratch:
            cluster.clock.callLater(0.1, interrupt)
        return begin_scratch(index)

    fetch.store.begin_scratch = then_interrupt  # type: ignore[method-assign]
    outcome = run(cluster, fetch.start())
    assert isinstance(outcome, Failure)
    outcome.trap(DownloadError)
    assert fetch.interrupted and seen == [True]
    assert not (tmp_path / "f.bin.part.dup").exists()
    assert (tmp_path / "f.bin.part").exists()


def test_the_scratch_file_is_removed_when_the_download_fails(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    # "fast" dies just after starting its duplicates; "slow" never answers.
    sources = [
        cluster.add("slow", hangs_for=30),
        cluster.add("fast", delay=1, dies_after=CHUNKS - 2),
    ]
    fetch = download(cluster, tmp_path / "f.bin", sources, copyBudget=0)
    _, scratch = counting_copies(fetch)
    outcome = run(cluster, fetch.start())
    assert isinstance(outcome, Failure)
    outcome.trap(NoLiveSourceError)
    assert scratch and all(c.closed for c in scratch)
    assert not (tmp_path / "f.bin.part.dup").exists()


def test_a_cancelled_duplicate_is_said_as_such_not_as_a_failing_source(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add("slow", delay=100), cluster.add("fast", delay=1)]
    with capturedLogs() as events:
        run(cluster, download(cluster, tmp_path / "f.bin", sources).start())
    said = [formatEvent(e) for e in events if e.get("log_namespace", "")]
    cancelled = [line for line in said if "cancelled the duplicate from slow" in line]
    assert cancelled and all("also arrived from fast" in line for line in cancelled)
    assert not any(line.startswith("dropping source slow") for line in said)


def test_a_dead_source_is_reported_once_whatever_its_lanes(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add("dies", dies_after=1), cluster.add("stays", delay=2)]
    with capturedLogs() as events:
        run(cluster, download(cluster, tmp_path / "f.bin", sources).start())
    drops = [formatEvent(e) for e in events if "dropping source" in formatEvent(e)]
    assert len(drops) == 1 and drops[0].startswith("dropping source dies:")


def test_a_source_outpaced_by_a_copy_is_taken_back_when_the_winner_dies(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    # "quick" fetches chunks 2-7, then copies "slow"'s chunks 0 and 1 (slow
    # has none verified and is overdue by quick's pace). Its copy of 0 wins,
    # so we hang up on "slow"; then "quick" dies before its copy of 1 ends.
    # No central lists sources again here, as in a secondary's replication.
    sources = [cluster.add("slow", delay=10), cluster.add("quick", dies_after=7)]
    target = tmp_path / "f.bin"
    fetch = download(cluster, target, sources)
    with capturedLogs() as events:
        result = run(cluster, fetch.start())
    assert isinstance(result, DownloadResult), result
    assert intact(cluster, target)
    assert cluster.opened == ["slow", "quick", "slow"]
    said = [formatEvent(e) for e in events]
    assert "chunk 0 also arrived from quick; cancelled the duplicate from slow" in said
    assert "trying source slow again" in said
    verified = {
        e["chunk"]: e["source"] for e in fetch.timeline if e["event"] == "verified"
    }
    assert verified[0] == "quick" and verified[1] == "slow"
    assert result.sources["slow"] == MIN_CHUNK_SIZE
    # Live again: not among the sources the download lost.
    assert list(fetch.sourceErrors) == ["quick"]


def test_a_source_taken_back_is_judged_on_its_own_failures(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [
        cluster.add("slow", delay=10, corrupt=True),
        cluster.add("quick", dies_after=7),
    ]
    fetch = download(cluster, tmp_path / "f.bin", sources)
    with capturedLogs() as events:
        outcome = run(cluster, fetch.start())
    assert isinstance(outcome, Failure)
    outcome.trap(NoLiveSourceError)
    assert cluster.opened == ["slow", "quick", "slow"]
    assert "endgame" not in fetch.sourceErrors["slow"]
    warned = [
        formatEvent(e)
        for e in events
        if e["log_level"] == LogLevel.warn and "dropping source slow" in formatEvent(e)
    ]
    assert warned == [f"dropping source slow: {fetch.sourceErrors['slow']}"]


def test_copies_stalled_at_the_end_are_replaced_not_waited_for(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    # "s0" stalls at once; "s1" serves two chunks, then copies s0's two
    # chunks and stalls too. "ok" copies them again once s1's copies are
    # overdue, and we hang up on s1 to cancel its copies.
    sources = [
        cluster.add("ok", delay=0.5),
        cluster.add("s0", delay=0.5, hangs_after=0, hangs_for=1000),
        cluster.add("s1", delay=0.5, hangs_after=2, hangs_for=1000),
    ]
    fetch = download(cluster, tmp_path / "f.bin", sources, progressTimeout=1000)
    with capturedLogs() as events:
        result = run(cluster, fetch.start())
    assert isinstance(result, DownloadResult), result
    assert intact(cluster, tmp_path / "f.bin")
    assert result.seconds < 10
    said = [formatEvent(e) for e in events]
    replaced = [line for line in said if "cancelled the stalled copy from s1" in line]
    assert replaced and all(line.startswith("ok fetches chunk") for line in replaced)
    copies = [e for e in fetch.timeline if e["event"] == "duplicate"]
    assert {e["source"] for e in copies} == {"ok", "s1"}
    # s1 is not at fault for being hung up on: it was connected again.
    assert cluster.opened.count("s1") == 2


def test_a_connection_still_opening_at_the_end_is_cancelled_quietly(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    sources = [cluster.add("ok"), cluster.add("unreachable")]
    cancelled: list[str] = []

    def open_source(source: SourceAddress) -> Deferred[Any]:
        if source.name == "unreachable":
            return Deferred(lambda d: cancelled.append(source.name))
        return cluster.open_source(source)

    fetch = Download(
        cluster.manifest.info,
        sources,
        str(tmp_path / "f.bin"),
        reactor=cluster.clock,
        openSource=open_source,
    )
    with capturedLogs() as events:
        result = run(cluster, fetch.start())
    assert isinstance(result, DownloadResult), result
    assert cancelled == ["unreachable"]
    assert "unreachable" not in fetch.sourceErrors
    assert not [e for e in events if "unreachable" in formatEvent(e)]
