"""The chunk scheduler: each chunk handed out once, failures taken back, endgame."""

from __future__ import annotations

from redesdl.client.scheduler import MAX_DUPLICATES, ChunkScheduler


def test_each_chunk_is_handed_out_once() -> None:
    scheduler = ChunkScheduler(range(3), endgame=False)
    taken = [scheduler.take("a"), scheduler.take("b"), scheduler.take("a")]
    assert sorted(index for index, _ in taken) == [0, 1, 2]
    assert all(direct for _, direct in taken)
    assert scheduler.take("b") is None
    assert not scheduler.finished


def test_a_released_chunk_goes_first_to_the_next_taker() -> None:
    scheduler = ChunkScheduler(range(3))
    first, _ = scheduler.take("slow")
    scheduler.release(first, "slow")
    assert scheduler.take("fast") == (first, True)


def test_waiters_wake_on_release_and_on_completion() -> None:
    scheduler = ChunkScheduler(range(2), endgame=False)
    (a, _), (b, _) = scheduler.take("a"), scheduler.take("b")
    woken: list[str] = []
    scheduler.changed().addCallback(lambda _: woken.append("release"))
    scheduler.release(a, "a")
    assert woken == ["release"]
    assert scheduler.take("c") == (a, True)
    scheduler.changed().addCallback(lambda _: woken.append("done"))
    assert scheduler.complete(a)
    assert scheduler.complete(b)
    assert woken == ["release", "done"]
    assert scheduler.finished and scheduler.done == 2


def test_endgame_duplicates_in_flight_chunks_and_first_copy_wins() -> None:
    scheduler = ChunkScheduler(range(2))
    assert scheduler.take("slow") == (0, True)
    assert scheduler.take("fast") == (1, True)
    assert scheduler.complete(1)
    assert scheduler.take("fast") == (0, False)
    assert scheduler.take("fast") is None
    assert scheduler.writer(0) == "slow"
    assert scheduler.complete(0)
    assert not scheduler.complete(0)
    assert scheduler.finished


def test_a_failing_writer_leaves_the_chunk_to_its_duplicate() -> None:
    scheduler = ChunkScheduler(range(1))
    scheduler.take("slow")
    assert scheduler.take("fast") == (0, False)
    scheduler.release(0, "slow")
    assert scheduler.writer(0) is None
    assert scheduler.isPending(0)
    assert scheduler.take("other") is None
    scheduler.release(0, "fast")
    assert scheduler.take("other") == (0, True)


def test_duplicates_are_bounded() -> None:
    scheduler = ChunkScheduler(range(MAX_DUPLICATES + 2))
    for index in range(MAX_DUPLICATES + 2):
        scheduler.take(f"s{index}")
    duplicates = [scheduler.take("idle"), scheduler.take("idle2"), scheduler.take("x")]
    assert sum(1 for d in duplicates if d is not None) == MAX_DUPLICATES


def test_empty_download_is_finished_at_once() -> None:
    assert ChunkScheduler([]).finished
