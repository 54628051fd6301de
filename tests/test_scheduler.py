"""The chunk scheduler hands out each missing chunk once and takes failures back."""

from __future__ import annotations

from redesdl.client.scheduler import ChunkScheduler


def test_each_chunk_is_handed_out_once() -> None:
    scheduler = ChunkScheduler(range(3))
    taken = [scheduler.take("a"), scheduler.take("b"), scheduler.take("a")]
    assert sorted(taken) == [0, 1, 2]
    assert scheduler.take("b") is None
    assert not scheduler.finished


def test_a_released_chunk_goes_first_to_the_next_taker() -> None:
    scheduler = ChunkScheduler(range(3))
    first = scheduler.take("slow")
    scheduler.release(first)
    assert scheduler.take("fast") == first


def test_waiters_wake_on_release_and_on_finish() -> None:
    scheduler = ChunkScheduler(range(2))
    a, b = scheduler.take("a"), scheduler.take("b")
    woken: list[str] = []
    scheduler.changed().addCallback(lambda _: woken.append("release"))
    scheduler.release(a)
    assert woken == ["release"]
    assert scheduler.take("c") == a
    scheduler.changed().addCallback(lambda _: woken.append("finish"))
    scheduler.complete(a)
    assert woken == ["release"]
    scheduler.complete(b)
    assert woken == ["release", "finish"]
    assert scheduler.finished and scheduler.done == 2


def test_empty_download_is_finished_at_once() -> None:
    assert ChunkScheduler([]).finished
